"""The Grafana dashboards and provisioning files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from oms_exporter.model import STEP_STATUSES
from tests.mixin_support import (
    CONTRACT,
    DASHBOARDS,
    DATASOURCE_REF,
    GRAFANA_PROVISIONING,
    RULES,
    check_promql_uses,
    grafana_to_promql,
    instant_query,
    iter_exprs,
    iter_panels,
    load_dashboard,
    load_yaml,
    parse_promql,
    prometheus_server,
    recorded_names,
    require_tool,
    run_tool,
    status_codes_from_rules,
    variable_queries,
    wait_until,
)
from tests.processes import exporter, simulator

PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline"}
LOADED = {path.name: load_dashboard(path) for path in DASHBOARDS}
DASHBOARD_DIR = DASHBOARDS[0].parent
OVERVIEW = LOADED["oms-overview.json"]
PROJECT = LOADED["oms-project.json"]
IDS = list(LOADED)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show data (rows left out)."""
    return [p for p in iter_panels(dashboard) if p["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_both_dashboards_exist() -> None:
    assert set(LOADED) == {"oms-overview.json", "oms-project.json"}


def test_committed_dashboards_are_what_the_code_generates() -> None:
    """grafana/dashboards/*.json is grafana/oms_dashboards' output, byte for byte."""
    from grafana.oms_dashboards import render_all

    rendered = render_all()
    assert set(rendered) == set(LOADED), "run `make dashboards`"
    for name, text in rendered.items():
        committed = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"{name} differs from the generator's output: run `make dashboards`"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_dashboard_is_valid_json_ready_for_import_and_provisioning(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    dashboard = json.loads(text)
    assert dashboard.get("id") is None  # no id: Grafana gives one on import
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert "__inputs" not in dashboard
    assert "__requires" not in dashboard
    assert "${DS_" not in text
    assert dashboard["schemaVersion"] >= 36
    assert "oms" in dashboard["tags"]


def test_dashboard_uids_are_unique() -> None:
    uids = [d["uid"] for d in LOADED.values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in iter_panels(dashboard)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    boxes = []
    for panel in iter_panels(dashboard):
        grid = panel["gridPos"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert min(grid["w"], grid["h"]) > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((panel["title"], grid))
    for (a_title, a), (b_title, b) in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"{a_title!r} overlaps {b_title!r}"


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_only_current_panel_types(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["type"] in PANEL_TYPES, f"{panel['title']}: {panel['type']}"


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_every_panel_has_a_title_description_and_unit(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["title"], panel["id"]
        assert panel.get("description"), panel["title"]
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert isinstance(unit, str), f"{panel['title']}: no unit"
        assert unit, f"{panel['title']}: empty unit"


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF, variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE_REF


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_variables(dashboard: dict[str, Any]) -> None:
    found = variables(dashboard)
    assert list(found) == ["datasource", "job", "oms", "project"]
    datasource = found["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in ("job", "oms", "project"):
        assert found[name]["type"] == "query"
    queries = dict(variable_queries(dashboard))
    assert "oms_exporter_build_info" in queries["job"]
    assert 'job=~"$job"' in queries["oms"]
    assert 'oms=~"$oms"' in queries["project"]


def test_overview_selects_many_projects() -> None:
    project = variables(OVERVIEW)["project"]
    assert project["multi"] is True
    assert project["includeAll"] is True
    assert project["allValue"] == ".*"


def _labels_of(metric: str) -> frozenset[str]:
    """The labels (besides job and instance) a contract or recorded series carries."""
    if metric in CONTRACT:
        return CONTRACT[metric]
    if metric.startswith("oms_project:"):
        return frozenset({"oms", "project_id"})
    if metric.startswith("oms:"):
        return frozenset({"oms"})
    return frozenset()


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_queries_filter_on_the_variables(dashboard: dict[str, Any]) -> None:
    for where, expr in iter_exprs(dashboard):
        for selector in parse_promql(expr).selectors:
            matchers = set(selector.matchers)
            if selector.metric == "ALERTS":  # exporter alerts carry no project_id
                assert ("oms", "=~", "$oms") in matchers, where
                continue
            assert ("job", "=~", "$job") in matchers, f"{where}: {selector.metric}"
            labels = _labels_of(selector.metric)
            if "oms" in labels:
                assert ("oms", "=~", "$oms") in matchers, f"{where}: {selector.metric}"
            if "project_id" in labels:
                assert ("project_id", "=~", "$project") in matchers, f"{where}: {selector.metric}"


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_panel_titles_are_unique(dashboard: dict[str, Any]) -> None:
    titles = [p["title"] for p in iter_panels(dashboard)]
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("dashboard", LOADED.values(), ids=IDS)
def test_queries_use_only_the_contract_and_the_recording_rules(dashboard: dict[str, Any]) -> None:
    problems = []
    for where, expr in iter_exprs(dashboard):
        problems += check_promql_uses(expr, where=where)
    for name, selector in variable_queries(dashboard):
        problems += check_promql_uses(selector, where=f"variable {name}")
    assert not problems, "\n".join(problems)


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (Grafana's variables replaced) as a recording rule."""
    rules = []
    for dashboard in LOADED.values():
        for _, expr in iter_exprs(dashboard):
            rules.append(
                {"record": f"dashboard:query{len(rules)}", "expr": grafana_to_promql(expr)}
            )
        for name, selector in variable_queries(dashboard):
            rules.append(
                {"record": f"dashboard:variable_{name}", "expr": grafana_to_promql(selector)}
            )
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_tool(require_tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rules_the_dashboards_use_exist() -> None:
    used = {
        s.metric
        for d in LOADED.values()
        for _, expr in iter_exprs(d)
        for s in parse_promql(expr).selectors
        if ":" in s.metric
    }
    assert used, "the dashboards are expected to draw the rules' thresholds and ETA"
    assert used <= recorded_names()


# ---------------------------------------------------------------------------
# What the overview must show
# ---------------------------------------------------------------------------
def by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in panels(dashboard) if p["title"] == title]
    return panel


def exprs_of(panel: dict[str, Any]) -> str:
    return "\n".join(t["expr"] for t in panel["targets"])


def test_overview_has_the_required_panels() -> None:
    table = by_title(OVERVIEW, "Projects")
    assert table["type"] == "table"
    for metric in (
        "oms_project_status",
        "oms_project_current_step",
        "oms_project_full_progress_ratio",
        "oms_project:incr_sync_lag_seconds:max",
        "oms_project_last_success_timestamp_seconds",
    ):
        assert metric in exprs_of(table)
    assert by_title(OVERVIEW, "Status")["type"] == "state-timeline"
    lag = by_title(OVERVIEW, "Incremental sync lag")
    assert "warning_threshold" in exprs_of(lag)
    assert "critical_threshold" in exprs_of(lag)
    assert "oms_project:full_progress_eta_seconds" in exprs_of(
        by_title(OVERVIEW, "Full migration ETA")
    )
    assert "oms_exporter_last_poll_round_duration_seconds" in exprs_of(
        by_title(OVERVIEW, "Poll round duration")
    )
    assert "sum by (reason)" in exprs_of(by_title(OVERVIEW, "Project poll errors by reason"))
    assert "up{" in exprs_of(by_title(OVERVIEW, "Exporter scrape"))


def test_overview_shows_discovery_and_shards_with_the_exporter() -> None:
    (row,) = [p for p in OVERVIEW["panels"] if p["type"] == "row" and p["title"] == "Exporter"]
    below_row = [p for p in panels(OVERVIEW) if p["gridPos"]["y"] > row["gridPos"]["y"]]
    for title, metric in (
        ("Projects discovered", "oms_discovery_projects"),
        ("Since last discovery", "oms_discovery_last_success_timestamp_seconds"),
        ("Discovery errors (1h)", "oms_discovery_errors_total"),
        ("Missing shards", "oms_exporter_shard_count"),
    ):
        panel = by_title(OVERVIEW, title)
        assert metric in exprs_of(panel), title
        assert panel in below_row, f"{title} is not in the Exporter row"
    assert "oms_exporter_shard_ordinal" in exprs_of(by_title(OVERVIEW, "Missing shards"))


def test_project_dashboard_shows_steps_and_the_full_transfer() -> None:
    steps = by_title(PROJECT, "Steps")
    assert steps["type"] == "table"
    assert "oms_project_step_status" in exprs_of(steps)
    assert "oms_project_step_progress_ratio" in exprs_of(steps)
    (organize,) = [t for t in steps["transformations"] if t["id"] == "organize"]
    columns = set(organize["options"]["renameByName"].values())
    assert {"Step", "Status", "Progress"} <= columns
    overrides = {o["matcher"]["options"]: o for o in steps["fieldConfig"]["overrides"]}
    assert set(overrides) <= columns
    (status_mapping,) = [
        prop["value"][0]["options"]
        for prop in overrides["Status"]["properties"]
        if prop["id"] == "mappings"
    ]
    assert set(status_mapping) == set(STEP_STATUSES)
    progress = {prop["id"]: prop["value"] for prop in overrides["Progress"]["properties"]}
    assert progress["unit"] == "percentunit"
    assert progress["custom.cellOptions"]["type"] == "gauge"
    for title, metrics in (
        (
            "Full transfer rows",
            (
                "oms_project_full_transfer_processed_rows",
                "oms_project_full_transfer_estimated_rows",
            ),
        ),
        (
            "Full transfer rate",
            (
                "oms_project_full_transfer_source_rows_per_second",
                "oms_project_full_transfer_sink_rows_per_second",
            ),
        ),
        ("Full transfer ETA", ("oms_project_full_transfer_eta_seconds",)),
    ):
        panel = by_title(PROJECT, title)
        assert panel["type"] == "stat", title
        for metric in metrics:
            assert metric in exprs_of(panel), f"{title}: {metric}"
    assert by_title(PROJECT, "Full transfer ETA")["fieldConfig"]["defaults"]["unit"] == "s"


def test_table_overrides_name_renamed_columns() -> None:
    table = by_title(OVERVIEW, "Projects")
    (organize,) = [t for t in table["transformations"] if t["id"] == "organize"]
    columns = set(organize["options"]["renameByName"].values())
    for override in table["fieldConfig"]["overrides"]:
        assert override["matcher"]["id"] == "byName"
        assert override["matcher"]["options"] in columns


def test_overview_links_to_the_project_dashboard_with_the_project() -> None:
    table = by_title(OVERVIEW, "Projects")
    links = [
        link["url"]
        for override in table["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert links
    for url in links:
        assert url.startswith(f"/d/{PROJECT['uid']}/")
        assert "var-project=${__data.fields.project_id}" in url
        assert "var-oms=${__data.fields.oms}" in url
        assert "${datasource:queryparam}" in url
    # And a dashboard link both ways, carrying the variables.
    for dashboard in (OVERVIEW, PROJECT):
        (link,) = [x for x in dashboard["links"] if x["type"] == "dashboards"]
        assert link["includeVars"] is True
        assert set(link["tags"]) <= set(OVERVIEW["tags"]) & set(PROJECT["tags"])


def _mappings(panel: dict[str, Any]) -> list[dict[str, str]]:
    options: list[dict[str, str]] = []
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        options.append(mapping["options"])
    for override in panel["fieldConfig"].get("overrides", []):
        for prop in override["properties"]:
            if prop["id"] == "mappings":
                options += [m["options"] for m in prop["value"]]
    return options


def test_status_colours_and_codes_agree_with_the_recording_rule() -> None:
    codes = status_codes_from_rules()
    colour_of: dict[str, str] = {}
    checked = 0
    for dashboard in LOADED.values():
        for panel in panels(dashboard):
            uses_code = "oms_project:status:code" in exprs_of(panel)
            for options in _mappings(panel):
                if uses_code and set(options) == {str(c) for c in codes}:
                    for code, entry in options.items():
                        assert entry["text"] == codes[int(code)]
                        colour_of.setdefault(entry["text"], entry["color"])
                        assert colour_of[entry["text"]] == entry["color"], entry["text"]
                        checked += 1
                elif set(options) == set(codes.values()):
                    for status, entry in options.items():
                        assert entry["text"] == status
                        colour_of.setdefault(status, entry["color"])
                        assert colour_of[status] == entry["color"], status
                        checked += 1
    # Overview table and state timeline, project stat and state timeline.
    assert checked == 4 * len(codes)
    assert colour_of["FAILED"] == "red"
    assert colour_of["RUNNING"] == "green"


# ---------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------
def test_datasource_provisioning() -> None:
    document = load_yaml(GRAFANA_PROVISIONING / "datasources/prometheus.yml")
    assert document["apiVersion"] == 1
    (datasource,) = document["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"].startswith("http://")


def test_dashboard_provisioning() -> None:
    document = load_yaml(GRAFANA_PROVISIONING / "dashboards/oms.yml")
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# ---------------------------------------------------------------------------
# Live: every dashboard query against a real Prometheus scraping the real
# exporter on the simulator's demo, with the real rules loaded.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from oms_exporter.simulator.scenario import demo_projects

    workdir = tmp_path_factory.mktemp("live-dashboards")
    projects = [p.id for p in demo_projects()] + ["np_missing"]
    with (
        # At 2x, np_demo_migration's full migration runs from 22 s to 82 s after start.
        simulator("--scenario", "demo", "--time-scale", "2") as oms,
        # Discovery on beside the static ids, so that the discovery panels have data.
        exporter(oms.url, projects, OMS_EXPORTER_DISCOVERY="true") as exported,
        prometheus_server(
            workdir, exporter=exported.url.removeprefix("http://"), rules=RULES
        ) as url,
    ):
        # Enough history for rates and derivatives, and a full migration under way.
        wait_until(
            lambda: (
                bool(instant_query(url, "count_over_time(oms_project:status:code[1m]) > 20"))
                and bool(instant_query(url, "oms_project:full_progress_eta_seconds"))
            ),
            timeout=60,
            what="20 s of recorded data and a full migration in progress",
        )
        yield url


def _substitute(expr: str) -> str:
    expr = expr.replace("$job", "oms-exporter").replace("$oms", ".*").replace("$project", ".*")
    return grafana_to_promql(expr)


# The queries that return nothing on the demo scenario, each for a feature the scenario
# lacks; every other query of both dashboards must return data. A query listed here
# that has data fails the test too, so the list stays true.
_NO_ALERT_YET = (
    "no alert fires while the test runs: the soonest, OMSProjectFailed on np_demo_failed, "
    "waits 2 minutes (`for: 2m`)"
)
NO_DATA_ON_THE_DEMO = {
    "OMS overview / OMS API requests and errors / B": (
        "oms_api_request_errors_total: the simulator runs without faults, no request fails"
    ),
    "OMS overview / Discovery errors (1h) / A": (
        "oms_discovery_errors_total: every discovery succeeds on the simulator"
    ),
    "OMS overview / Missing shards / A": (
        "oms_exporter_shard_*: the exporter runs unsharded and exposes no shard series"
    ),
    "OMS overview / annotation Firing OMS alerts": _NO_ALERT_YET,
    "OMS project / annotation Firing OMS alerts": _NO_ALERT_YET,
}


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    path: Path, prometheus: str
) -> None:
    dashboard = load_dashboard(path)
    exprs = dict(iter_exprs(dashboard))
    expected_empty = {
        where for where in NO_DATA_ON_THE_DEMO if where.startswith(dashboard["title"] + " /")
    }
    assert expected_empty <= set(exprs), "NO_DATA_ON_THE_DEMO names a query that does not exist"
    empty = {
        where for where, expr in exprs.items() if not instant_query(prometheus, _substitute(expr))
    }
    for name, selector in variable_queries(dashboard):
        assert instant_query(prometheus, _substitute(selector)), f"variable {name}"
    without_data = [f"{where}: {exprs[where]}" for where in sorted(empty - expected_empty)]
    assert not without_data, "queries without data:\n" + "\n".join(without_data)
    with_data = sorted(expected_empty - empty)
    assert not with_data, f"listed in NO_DATA_ON_THE_DEMO but have data: {with_data}"
