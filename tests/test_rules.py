"""The Prometheus rules, their promtool unit tests, and the example configurations."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from oms_exporter.model import STEP_STATUSES, VERIFY_ROW_KINDS, Reason
from oms_exporter.poller import Poller
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.sharding import Shard
from oms_exporter.store import Store
from tests.conftest import ClientUnderTest, target_config
from tests.mixin_support import (
    ALERTMANAGER_CONFIG,
    CONTRACT,
    DASHBOARDS,
    LABEL_VALUES,
    ONLY_WHEN_SHARDED,
    ONLY_WITH_DISCOVERY,
    OPTIONAL_LABELS,
    OPTIONAL_METRICS,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RULES,
    RUNBOOK,
    RUNBOOK_URL,
    WebhookReceiver,
    alerting_rules,
    alertmanager_server,
    check_promql_uses,
    github_anchors,
    http_json,
    instant_query,
    iter_exprs,
    load_dashboard,
    load_yaml,
    parse_promql,
    prometheus_server,
    recording_rules,
    require_tool,
    rule_groups,
    run_tool,
    wait_until,
)
from tests.oms_replay import ReplayOms
from tests.processes import exporter, get, post_json, simulator

ALERTS = alerting_rules()
ALERT_NAMES = [rule["alert"] for rule in ALERTS]
SEVERITIES = {"critical", "warning", "info"}
# Series of one OMS (no project_id): their alerts must name the OMS.
PER_OMS_METRICS = sorted(
    m for m, labels in CONTRACT.items() if labels & {"oms", "project_id"} == {"oms"}
)


def parse_duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as 1h30m."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------------------
# promtool and amtool
# ---------------------------------------------------------------------------
def test_promtool_accepts_the_rules() -> None:
    result = run_tool(require_tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run_tool(require_tool("promtool"), "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_example_prometheus_config_is_valid() -> None:
    result = run_tool(require_tool("promtool"), "check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_scrapes_the_exporter_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "oms-exporter"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:18089"]
    rule_files = [PROMETHEUS_CONFIG.parent / f for f in config["rule_files"]]
    assert RULES in [f.resolve() for f in rule_files]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:9093"]


def test_example_alertmanager_config_is_valid() -> None:
    result = run_tool(require_tool("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=OMSProjectFailed", "severity=critical"], "oms-critical"),
        (["alertname=OMSProjectIncrSyncLagHigh", "severity=warning"], "oms-warning"),
        (["alertname=OMSProjectStatusUnknown", "severity=info"], "oms-info"),
        (["alertname=SomethingElse"], "oms-warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = run_tool(
        require_tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_every_severity_has_a_route() -> None:
    routes = load_yaml(ALERTMANAGER_CONFIG)["route"]["routes"]
    routed = {m for r in routes for m in r["matchers"]}
    for severity in SEVERITIES:
        assert f'severity="{severity}"' in routed


# ---------------------------------------------------------------------------
# Inhibition: OMSApiUnreachable silences the per-project alerts of its OMS.
# ---------------------------------------------------------------------------
def _matcher_regex(matchers: list[str], label: str) -> re.Pattern[str]:
    (matcher,) = [m for m in matchers if m.startswith(label)]
    op, value = re.fullmatch(rf'{label}(=~|=)"(.*)"', matcher).groups()  # type: ignore[union-attr]
    return re.compile(value if op == "=~" else re.escape(value))


def test_api_unreachable_inhibits_every_project_alert_of_the_same_oms() -> None:
    rules = load_yaml(ALERTMANAGER_CONFIG)["inhibit_rules"]
    (rule,) = [r for r in rules if r["source_matchers"] == ['alertname="OMSApiUnreachable"']]
    assert rule["equal"] == ["oms"]
    target = _matcher_regex(rule["target_matchers"], "alertname")
    project_alerts = [n for n in ALERT_NAMES if n.startswith("OMSProject")]
    assert project_alerts
    # Discovery of an OMS that does not answer fails too: a symptom as well.
    for name in [*project_alerts, "OMSDiscoveryFailing"]:
        assert target.fullmatch(name), f"{name} is not inhibited by OMSApiUnreachable"
    assert not target.fullmatch("OMSApiUnreachable")


def test_inhibit_rules_name_existing_alerts() -> None:
    for rule in load_yaml(ALERTMANAGER_CONFIG)["inhibit_rules"]:
        for key in ("source_matchers", "target_matchers"):
            regex = _matcher_regex(rule[key], "alertname")
            assert any(regex.fullmatch(n) for n in ALERT_NAMES), f"{key} of {rule} matches none"


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager running the example configuration."""
    with alertmanager_server(tmp_path) as url:
        yield url


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": name},
        "startsAt": now,
    }


def test_alertmanager_inhibits_project_alerts_while_their_oms_is_unreachable(
    alertmanager: str,
) -> None:
    target = {"job": "oms-exporter", "instance": "127.0.0.1:18089"}
    http_json(
        f"{alertmanager}/api/v2/alerts",
        [
            _alert("OMSApiUnreachable", "critical", oms="prod", **target),
            _alert("OMSProjectFailed", "critical", oms="prod", project_id="np_1", **target),
            _alert("OMSProjectDown", "warning", oms="prod", project_id="np_2", **target),
            _alert("OMSProjectFailed", "critical", oms="test", project_id="np_3", **target),
        ],
    )
    expected = {
        ("OMSApiUnreachable", ""): ("active", False),
        ("OMSProjectFailed", "np_1"): ("suppressed", True),
        ("OMSProjectDown", "np_2"): ("suppressed", True),
        ("OMSProjectFailed", "np_3"): ("active", False),  # another OMS
    }

    def states() -> dict[tuple[str, str], tuple[str, bool]]:
        found = {}
        for alert in http_json(f"{alertmanager}/api/v2/alerts"):
            labels = alert["labels"]
            key = (labels["alertname"], labels.get("project_id", ""))
            found[key] = (alert["status"]["state"], bool(alert["status"]["inhibitedBy"]))
        return found

    # Alertmanager marks inhibitions as it processes the alerts, not at once when they
    # are posted: on a loaded machine the first read can come before that.
    deadline = time.monotonic() + 20
    state = states()
    while state != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        state = states()
    assert state == expected


# ---------------------------------------------------------------------------
# Style of the alerts
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_alert_follows_the_style(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"OMS(?:[A-Z][a-z0-9]*|Api)+", name), f"{name}: not OMS + CamelCase"
    assert set(rule["labels"]) == {"severity"}
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    summary = annotations["summary"]
    assert "{{" not in summary, "summary must be a static sentence"
    assert summary[0].isupper(), summary
    assert summary.endswith("."), summary
    description = annotations["description"]
    assert "{{" in description, "description must be templated"
    metrics = {s.metric for s in parse_promql(rule["expr"]).selectors}
    if any(m.startswith("oms_project_") for m in metrics):
        assert "$labels.project_id" in description
        assert "$labels.oms" in description
    elif metrics & set(PER_OMS_METRICS):
        assert "$labels.oms" in description
    elif metrics <= ONLY_WHEN_SHARDED:
        # Shard alerts compare the replicas of a job: they name the job, not one instance.
        assert "$labels.job" in description
    else:
        assert "$labels.instance" in description
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()


def test_alert_names_are_unique() -> None:
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES))


def test_every_runbook_anchor_exists() -> None:
    anchors = github_anchors(RUNBOOK.read_text(encoding="utf-8"))
    missing = [
        r["annotations"]["runbook_url"]
        for r in ALERTS
        if r["annotations"]["runbook_url"].split("#", 1)[1] not in anchors
    ]
    assert not missing


def test_runbook_has_no_section_for_a_missing_alert() -> None:
    headings = re.findall(r"^## (OMS\w+)$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(headings) == sorted(ALERT_NAMES)


def test_runbook_table_lists_every_alert() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    listed = re.findall(r"^\| (OMS\w+) \|", text, re.MULTILINE)
    assert sorted(listed) == sorted(ALERT_NAMES)


def test_the_required_alerts_exist() -> None:
    required = {
        "OMSExporterDown",
        "OMSExporterPollStalled",
        "OMSApiUnreachable",
        "OMSProjectDown",
        "OMSProjectFailed",
        "OMSProjectSuspendedTooLong",
        "OMSProjectNotFound",
        "OMSProjectIncrSyncLagHigh",
        "OMSProjectIncrSyncLagVeryHigh",
        "OMSProjectFullMigrationStalled",
        "OMSProjectIncrSyncCheckpointStalled",
        "OMSExporterShardMissing",
        "OMSExporterShardMismatch",
        "OMSDiscoveryFailing",
        "OMSClockSkew",
    }
    assert required <= set(ALERT_NAMES)


def test_exporter_down_covers_a_down_and_an_absent_target() -> None:
    (rule,) = [r for r in ALERTS if r["alert"] == "OMSExporterDown"]
    assert 'up{job="oms-exporter"} == 0' in rule["expr"]
    assert 'absent(up{job="oms-exporter"})' in rule["expr"]


def test_rules_use_only_metrics_and_labels_of_the_contract() -> None:
    problems = []
    for group in rule_groups():
        for rule in group["rules"]:
            where = rule.get("alert") or rule["record"]
            problems += check_promql_uses(rule["expr"], where=where)
    assert not problems, "\n".join(problems)


def test_recording_rule_names_follow_the_convention() -> None:
    for rule in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule["record"]


# ---------------------------------------------------------------------------
# Thresholds: in one place, derived from OMS's protection levels.
# ---------------------------------------------------------------------------
def _thresholds(severity: str) -> dict[str, float]:
    (group,) = [g for g in rule_groups() if g["name"] == "oms-exporter.thresholds"]
    name = f"oms:incr_sync_lag_{severity}_threshold_seconds"
    values = {}
    for rule in group["rules"]:
        if rule["record"] == name:
            match = re.fullmatch(r"vector\((\d+(?:\.\d+)?)\)", rule["expr"])
            assert match, rule
            values[rule["labels"]["alarm_level"]] = float(match.group(1))
    return values


def test_every_alarm_level_but_ignore_has_lag_thresholds() -> None:
    levels = set(LABEL_VALUES["alarm_level"]) - {"IGNORE"}
    warning, critical = _thresholds("warning"), _thresholds("critical")
    assert set(warning) == levels
    assert set(critical) == levels
    for level in levels:
        assert critical[level] > warning[level]


def test_lag_thresholds_stay_within_oms_protection_levels() -> None:
    # OMS's own delay alarms: High 1 s..5 min, Medium 30 s..10 min.
    warning = _thresholds("warning")
    assert 1 <= warning["HIGH"] <= 300
    assert 30 <= warning["MEDIUM"] <= 600
    assert warning["HIGH"] <= warning["MEDIUM"] <= warning["LOW"]


# ---------------------------------------------------------------------------
# The promtool unit tests cover every alert, both ways.
# ---------------------------------------------------------------------------
def _alert_cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(test group, alert_rule_test case) pairs of the unit test file."""
    tests = load_yaml(RULE_TESTS)["tests"]
    return [(group, case) for group in tests for case in group.get("alert_rule_test", [])]


def test_unit_tests_load_the_rules_file() -> None:
    rule_files = load_yaml(RULE_TESTS)["rule_files"]
    assert [(RULE_TESTS.parent / f).resolve() for f in rule_files] == [RULES]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_firing_case_with_labels_and_annotations(name: str) -> None:
    (rule,) = [r for r in ALERTS if r["alert"] == name]
    firing = [c for _, c in _alert_cases() if c["alertname"] == name and c["exp_alerts"]]
    assert firing, f"no unit test where {name} fires"
    for case in firing:
        for expected in case["exp_alerts"]:
            assert expected["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(expected.get("exp_annotations", {})) == set(rule["annotations"])


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_quiet_case(name: str) -> None:
    quiet = [c for _, c in _alert_cases() if c["alertname"] == name and not c["exp_alerts"]]
    assert quiet, f"no unit test where {name} must stay quiet"


@pytest.mark.parametrize("name", [r["alert"] for r in ALERTS if "for" in r])
def test_every_alert_has_a_case_shorter_than_its_for(name: str) -> None:
    """An alert must be seen pending (not yet firing) before it fires, in one test group."""
    by_group: dict[int, list[tuple[float, set[str]]]] = {}
    for group, case in _alert_cases():
        if case["alertname"] == name:
            labels = {json.dumps(e["exp_labels"], sort_keys=True) for e in case["exp_alerts"]}
            by_group.setdefault(id(group), []).append(
                (parse_duration_seconds(case["eval_time"]), labels)
            )
    for cases in by_group.values():
        cases.sort(key=lambda c: c[0])
        for (_, earlier), (_, later) in pairwise(cases):
            if earlier < later:
                return
    pytest.fail(f"no unit test shows {name} pending before it fires")


# ---------------------------------------------------------------------------
# Live: the real exporter (on the simulator's demo), a real Prometheus running
# the rules, and a real Alertmanager running the example configuration.
# ---------------------------------------------------------------------------
MISSING_PROJECT = "np_missing"  # a project id OMS does not know: polls answer "not found"


@dataclass
class Live:
    exporter: str
    prometheus: str
    alertmanager: str
    webhooks: WebhookReceiver


def _rules_without_waiting(path: Path) -> Path:
    """The rules with every `for:` at 0s, so that the alerts fire within seconds."""
    document = load_yaml(RULES)
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _alertmanager_for_test(path: Path, webhooks: str) -> Path:
    """The example Alertmanager configuration, delivering at once to `webhooks`."""
    document = load_yaml(ALERTMANAGER_CONFIG)
    for route in [document["route"], *document["route"]["routes"]]:
        route.update(group_wait="0s", group_interval="1s")
    for receiver in document["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = webhooks + urllib.parse.urlsplit(webhook["url"]).path
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from oms_exporter.simulator.scenario import demo_projects

    workdir = tmp_path_factory.mktemp("live-rules")
    projects = [p.id for p in demo_projects()] + [MISSING_PROJECT]
    with (
        WebhookReceiver() as webhooks,
        simulator("--scenario", "demo", "--time-scale", "4") as oms,
        exporter(oms.url, projects) as exported,
        alertmanager_server(
            workdir, _alertmanager_for_test(workdir / "alertmanager.yml", webhooks.url)
        ) as alertmanager,
        prometheus_server(
            workdir,
            exporter=exported.url.removeprefix("http://"),
            rules=_rules_without_waiting(workdir / "rules.yml"),
            alertmanager=alertmanager,
        ) as prometheus,
    ):
        yield Live(exported.url, prometheus, alertmanager, webhooks)


def _observed_labels(body: str) -> dict[str, set[frozenset[str]]]:
    """For each sample name in an exposition, the label-name sets seen."""
    seen: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            seen.setdefault(sample.name, set()).add(frozenset(sample.labels))
    return seen


def test_exporter_output_matches_the_contract_the_rules_and_dashboards_use(live: Live) -> None:
    def not_found_counted() -> bool:
        body = get(f"{live.exporter}/metrics")[1]
        return f'project_id="{MISSING_PROJECT}",reason="not_found"' in body

    wait_until(not_found_counted, timeout=30, what="the missing project's not_found errors")
    status, body = get(f"{live.exporter}/metrics")
    assert status == 200
    observed = _observed_labels(body)
    # Counters that only appear once an OMS request failed: not provoked here.
    only_after_errors = {"oms_api_request_errors_total"}
    # This exporter runs unsharded and is given its project ids (so discovery is off):
    # the families of sharding and discovery must be absent here, and are checked by
    # test_sharded_discovering_exporter_adds_the_families_of_the_contract below.
    conditional = ONLY_WHEN_SHARDED | ONLY_WITH_DISCOVERY
    assert not conditional & set(observed), "unsharded, discovery off: none of these"
    for metric, labels in CONTRACT.items():
        if metric in conditional:
            continue
        if metric in only_after_errors | OPTIONAL_METRICS and metric not in observed:
            continue
        assert metric in observed, f"the exporter does not expose {metric}"
        optional = OPTIONAL_LABELS.get(metric, frozenset())
        for seen in observed[metric]:
            assert labels <= seen <= labels | optional, f"{metric}: labels {seen}"
    used: set[tuple[str, str]] = set()
    exprs = [r["expr"] for g in rule_groups() for r in g["rules"]]
    exprs += [e for path in DASHBOARDS for _, e in iter_exprs(load_dashboard(path))]
    for expr in exprs:
        for selector in parse_promql(expr).selectors:
            if selector.metric in CONTRACT:
                used |= {(selector.metric, label) for label, _, _ in selector.matchers}
                used.add((selector.metric, ""))
    for metric, label in sorted(used):
        sometimes = only_after_errors | OPTIONAL_METRICS  # a finished transfer has no ETA
        if metric in conditional or (metric in sometimes and metric not in observed):
            continue
        assert metric in observed, f"{metric} is used but not exposed"
        if label and label not in {"job", "instance"}:
            assert any(label in names for names in observed[metric]), f"{metric}{{{label}}}"
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in LABEL_VALUES and sample.name in CONTRACT:
                    allowed = LABEL_VALUES[label]
                    if (sample.name, label) == ("oms_project_step_status", "status"):
                        allowed = STEP_STATUSES  # steps have their own status set
                    if (sample.name, label) == ("oms_project_full_verify_rows", "kind"):
                        allowed = VERIFY_ROW_KINDS  # rows by kind, not the project's kind
                    assert value in allowed, f"{sample.name}{{{label}={value!r}}}"


def test_sharded_discovering_exporter_adds_the_families_of_the_contract() -> None:
    """Shard 1 of 2, discovering its projects; then OMS goes down so discovery fails."""
    with (
        simulator("--scenario", "demo") as oms,
        exporter(
            oms.url,
            [],
            OMS_EXPORTER_SHARD_COUNT="2",
            OMS_EXPORTER_SHARD_INDEX="1",
            OMS_EXPORTER_DISCOVERY_INTERVAL="1",
        ) as exported,
    ):

        def exposed(*metrics: str) -> bool:
            observed = _observed_labels(get(f"{exported.url}/metrics")[1])
            return all(metric in observed for metric in metrics)

        wait_until(
            lambda: exposed(*ONLY_WHEN_SHARDED, "oms_discovery_projects"),
            timeout=30,
            what="a successful discovery",
        )
        post_json(f"{oms.url}/_sim/down", {"down": True})
        wait_until(
            lambda: exposed("oms_discovery_errors_total"), timeout=30, what="a failed discovery"
        )
        body = get(f"{exported.url}/metrics")[1]
    observed = _observed_labels(body)
    for metric in sorted(ONLY_WHEN_SHARDED | ONLY_WITH_DISCOVERY):
        assert observed.get(metric) == {CONTRACT[metric]}, f"{metric}: {observed.get(metric)}"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("oms_exporter_shard_ordinal", ())] == 1
    assert samples[("oms_exporter_shard_count", ())] == 2
    reasons = {
        dict(labels)["reason"] for name, labels in samples if name == "oms_discovery_errors_total"
    }
    assert reasons
    assert reasons <= set(LABEL_VALUES["reason"])


def test_every_rule_evaluates_without_error_on_real_data(live: Live) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = http_json(f"{live.prometheus}/api/v1/rules")["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def evaluated_with_data() -> bool:
        return bool(instant_query(live.prometheus, "oms_project:status:code")) and all(
            not r["lastEvaluation"].startswith("0001") for r in rules()
        )

    wait_until(evaluated_with_data, timeout=30, what="every rule to be evaluated")
    time.sleep(2)
    broken = {r["name"]: r.get("lastError") for r in rules() if r["health"] != "ok"}
    assert not broken
    assert len(rules()) == len(alerting_rules()) + len(recording_rules())


def test_alerts_travel_from_prometheus_through_alertmanager_to_the_webhook(live: Live) -> None:
    expected = {
        ("OMSProjectFailed", "np_demo_failed", "/alerts/critical"),
        ("OMSProjectSuspendedTooLong", "np_demo_suspended", "/alerts/warning"),
        ("OMSProjectNotFound", MISSING_PROJECT, "/alerts/warning"),
    }

    def delivered() -> set[tuple[str, str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("project_id", ""), path)
            for path, a in live.webhooks.alerts()
            if a["status"] == "firing"
        }

    wait_until(lambda: expected <= delivered(), timeout=60, what=f"webhooks for {expected}")
    failed = next(
        a for _, a in live.webhooks.alerts() if a["labels"]["alertname"] == "OMSProjectFailed"
    )
    assert failed["labels"]["severity"] == "critical"
    assert failed["labels"]["oms"]
    assert failed["annotations"]["description"].startswith(
        f"Project np_demo_failed on OMS {failed['labels']['oms']} has been FAILED"
    )
    assert failed["annotations"]["description"].endswith("in step FULL_TRANSFER.")
    assert failed["annotations"]["runbook_url"].endswith("#omsprojectfailed")
    # The missing project is down too, but once "not found" fires it inhibits that.
    # (With `for: 0s` here, OMSProjectDown may have been delivered before.)
    in_alertmanager = {
        (a["labels"]["alertname"], a["labels"].get("project_id")): a["status"]["state"]
        for a in http_json(f"{live.alertmanager}/api/v2/alerts")
    }
    assert in_alertmanager[("OMSProjectDown", MISSING_PROJECT)] == "suppressed"
    # The exporter and OMS are healthy: none of their alerts.
    firing = {
        a["labels"]["alertname"]
        for a in http_json(f"{live.prometheus}/api/v1/alerts")["data"]["alerts"]
    }
    assert not firing & {"OMSExporterDown", "OMSExporterPollStalled", "OMSApiUnreachable"}


# ---------------------------------------------------------------------------
# The exporter's own backoff must not make an alert flap.
# ---------------------------------------------------------------------------
async def test_project_not_found_fires_without_a_gap_for_two_hours_of_real_backoff(
    replay: ReplayOms, make_client: Callable[..., ClientUnderTest], tmp_path: Path
) -> None:
    """Drive the real poller (30 s rounds, a project that stays not found) for 2 hours of
    fake time; its error counter, scraped every 30 s, keeps OMSProjectNotFound firing."""
    interval = 30.0
    clock = [1_800_000_000.0]
    poller = Poller(
        store=Store(), metrics=SelfMetrics(), interval_seconds=interval, clock=lambda: clock[0]
    )
    poller.configure(
        [(target_config("prod", ["np_gone"]), make_client("v4").client)],
        interval_seconds=interval,
        request_timeout_seconds=2,
        max_concurrency=1,
        shard=Shard(),
    )
    counts = []
    for _ in range(240):
        await poller.poll_round()
        state = poller.store.get("prod", "np_gone")
        assert state is not None
        counts.append(state.errors.get(Reason.NOT_FOUND, 0))
        clock[0] += interval
    polls = sorted(set(counts))
    assert len(polls) < 40, "the project is polled with backoff, not every round"
    labels = 'job="oms-exporter",instance="127.0.0.1:18089",oms="prod",project_id="np_gone"'
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                "input_series": [
                    {"series": f"oms_project_up{{{labels}}}", "values": "0x240"},
                    {
                        "series": f'oms_project_poll_errors_total{{{labels},reason="not_found"}}',
                        "values": " ".join(str(count) for count in counts),
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": 'count(ALERTS{alertname="OMSProjectNotFound",'
                        'alertstate="firing",project_id="np_gone"})',
                        "eval_time": f"{minutes}m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                    for minutes in range(20, 120, 1)
                ],
            }
        ],
    }
    path = tmp_path / "not-found-backoff.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = run_tool(require_tool("promtool"), "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
