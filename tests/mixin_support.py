"""Helpers for the tests of the monitoring mixin: rules, Alertmanager and dashboards."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import stop

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy/prometheus/oms-exporter-rules.yml"
RULE_TESTS = REPO / "deploy/prometheus/oms-exporter-rules.test.yml"
PROMETHEUS_CONFIG = REPO / "deploy/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
RUNBOOK = REPO / "docs/runbook.md"
DASHBOARDS = sorted((REPO / "grafana/dashboards").glob("*.json"))
GRAFANA_PROVISIONING = REPO / "grafana/provisioning"
RUNBOOK_URL = "https://github.com/oms-exporter/oms-exporter/blob/main/docs/runbook.md#"

# Which Debian package ships each tool (the Makefile installs them in CI).
TOOL_PACKAGES = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
}


def require_tool(*names: str) -> str:
    """Return the path of the first tool found; fail (never skip) when none is installed."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    package = TOOL_PACKAGES.get(names[0], names[0])
    pytest.fail(
        f"{' or '.join(names)} not found on PATH: install the Debian package {package!r} "
        f"(apt-get install {package}); these checks must not be skipped",
        pytrace=False,
    )


def run_tool(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a command line tool and capture its output as text."""
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


# ---------------------------------------------------------------------------
# The metrics contract: what the exporter exposes (labels besides job/instance).
# ---------------------------------------------------------------------------
PROJECT = frozenset({"oms", "project_id"})
STATUSES = [
    "INIT", "RUNNING", "SUSPEND", "FAILED", "FINISHED", "RELEASING", "RELEASED", "DELETED",
    "RUNNING_MODIFYING", "RUNNING_MERGING", "RUNNING_ALARMING", "UNKNOWN",
]  # fmt: skip
REASONS = ["timeout", "connection", "http", "auth", "not_found", "api_error", "decode", "invalid"]
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "status": tuple(STATUSES),
    "api": ("v4", "v3-migration", "v3-sync"),
    "kind": ("migration", "sync", "unknown"),
    "alarm_level": ("HIGH", "MEDIUM", "LOW", "IGNORE", "UNKNOWN"),
    "feature": ("struct", "full", "incr", "reverse_incr", "full_verify", "incr_verify"),
    "direction": ("forward", "reverse"),
    "reason": tuple(REASONS),
}
CONTRACT: dict[str, frozenset[str]] = {
    "oms_project_up": PROJECT,
    "oms_project_status": PROJECT | {"status"},
    "oms_project_current_step": PROJECT | {"step"},
    "oms_project_info": PROJECT | {"api", "kind", "alarm_level"},
    "oms_project_feature_enabled": PROJECT | {"feature"},
    "oms_project_struct_progress_ratio": PROJECT,
    "oms_project_full_progress_ratio": PROJECT,
    "oms_project_incr_sync_checkpoint_timestamp_seconds": PROJECT | {"direction"},
    "oms_project_incr_sync_lag_seconds": PROJECT | {"direction"},
    "oms_project_last_success_timestamp_seconds": PROJECT,
    "oms_project_poll_errors_total": PROJECT | {"reason"},
    "oms_project_step_progress_ratio": PROJECT | {"step"},
    "oms_project_step_status": PROJECT | {"step", "status"},
    "oms_project_full_transfer_processed_rows": PROJECT | {"step"},
    "oms_project_full_transfer_estimated_rows": PROJECT | {"step"},
    "oms_project_full_transfer_source_rows_per_second": PROJECT | {"step"},
    "oms_project_full_transfer_sink_rows_per_second": PROJECT | {"step"},
    "oms_project_full_transfer_eta_seconds": PROJECT | {"step"},
    "oms_project_full_transfer_source_bytes_per_second": PROJECT | {"step"},
    "oms_project_full_transfer_sink_bytes_per_second": PROJECT | {"step"},
    "oms_project_full_transfer_source_row_latency_seconds": PROJECT | {"step"},
    "oms_project_full_transfer_sink_row_latency_seconds": PROJECT | {"step"},
    "oms_project_incr_sync_checkpoint_sample_timestamp_seconds": PROJECT | {"direction"},
    "oms_project_alarming": PROJECT,
    "oms_project_full_verify_different_rows": PROJECT,
    "oms_project_full_verify_rows": PROJECT | {"kind"},
    "oms_project_full_verify_tables": PROJECT | {"result"},
    "oms_project_cutover_ready": PROJECT,
    "oms_project_cutover_blocked": PROJECT | {"blocker"},
    "oms_clock_skew_seconds": frozenset({"oms"}),
    "oms_up": frozenset({"oms"}),
    "oms_api_request_errors_total": frozenset({"oms", "reason"}),
    "oms_api_requests_total": frozenset({"oms"}),
    "oms_api_request_duration_seconds_bucket": frozenset({"oms", "le"}),
    "oms_api_request_duration_seconds_sum": frozenset({"oms"}),
    "oms_api_request_duration_seconds_count": frozenset({"oms"}),
    "oms_exporter_build_info": frozenset({"version"}),
    "oms_exporter_last_poll_round_duration_seconds": frozenset(),
    "oms_exporter_last_poll_round_timestamp_seconds": frozenset(),
    "oms_exporter_poll_rounds_total": frozenset(),
    "oms_exporter_poll_interval_seconds": frozenset(),
    "oms_exporter_projects": frozenset({"oms"}),
    "oms_discovery_projects": frozenset({"oms"}),
    "oms_discovery_last_success_timestamp_seconds": frozenset({"oms"}),
    "oms_discovery_errors_total": frozenset({"oms", "reason"}),
    "oms_exporter_shard_ordinal": frozenset(),
    "oms_exporter_shard_count": frozenset(),
    "oms_exporter_config_last_reload_successful": frozenset(),
    "oms_exporter_config_last_reload_success_timestamp_seconds": frozenset(),
    "process_cpu_seconds_total": frozenset(),
    "process_resident_memory_bytes": frozenset(),
    "process_start_time_seconds": frozenset(),
}
# Labels a series carries only when OMS told (4.x details): present or absent, both right.
OPTIONAL_LABELS: dict[str, frozenset[str]] = {
    "oms_project_info": frozenset({"name", "type", "source_type", "sink_type", "labels"}),
}
# Families that appear only in some situations (a finished full transfer has no ETA).
OPTIONAL_METRICS = frozenset(
    {
        "oms_project_full_transfer_eta_seconds",
        "oms_project_full_transfer_source_rows_per_second",
        "oms_project_full_transfer_sink_rows_per_second",
        # Only where OMS reports them: byte rates and latencies in the step info, the
        # checkpoint's sample time in INCR_TRANSFER's, the alarm state in ListProjects.
        "oms_project_full_transfer_source_bytes_per_second",
        "oms_project_full_transfer_sink_bytes_per_second",
        "oms_project_full_transfer_source_row_latency_seconds",
        "oms_project_full_transfer_sink_row_latency_seconds",
        "oms_project_incr_sync_checkpoint_sample_timestamp_seconds",
        "oms_project_alarming",
        # Only for projects with a full verification result, and for migrations with
        # incremental sync (the only ones that cut over).
        "oms_project_full_verify_different_rows",
        "oms_project_full_verify_rows",
        "oms_project_full_verify_tables",
        "oms_project_cutover_ready",
        "oms_project_cutover_blocked",
    }
)
# Families only a sharded exporter (shard_count > 1) exposes; an unsharded one has none.
ONLY_WHEN_SHARDED = frozenset({"oms_exporter_shard_ordinal", "oms_exporter_shard_count"})
# Families only an exporter discovering projects (ListProjects) exposes: the gauges once a
# discovery succeeded, the counter once one failed.
ONLY_WITH_DISCOVERY = frozenset(
    {
        "oms_discovery_projects",
        "oms_discovery_last_success_timestamp_seconds",
        "oms_discovery_errors_total",
    }
)
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus itself makes: any label is fine on ALERTS.
PROMETHEUS_SERIES = {"up": frozenset(), "ALERTS": None}


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict[str, Any]]:
    """The groups of the rules file."""
    groups: list[dict[str, Any]] = load_yaml(RULES)["groups"]
    return groups


def alerting_rules() -> list[dict[str, Any]]:
    """Every alerting rule, in file order."""
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def recording_rules() -> list[dict[str, Any]]:
    """Every recording rule, in file order."""
    return [r for g in rule_groups() for r in g["rules"] if "record" in r]


def recorded_names() -> set[str]:
    """Names of the series the recording rules produce."""
    return {r["record"] for r in recording_rules()}


def status_codes_from_rules() -> dict[int, str]:
    """The status code table of the oms_project:status:code recording rule."""
    (rule,) = [r for r in recording_rules() if r["record"] == "oms_project:status:code"]
    pairs = re.findall(r'status="([A-Z_]+)"\}\s*==\s*1\)\s*\*\s*(\d+)', rule["expr"])
    return {int(code): status for status, code in pairs}


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# ---------------------------------------------------------------------------
# PromQL, read just enough to list metric names, label names and matchers.
# ---------------------------------------------------------------------------
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2", "start", "end",
}  # fmt: skip


@dataclass(frozen=True)
class Selector:
    """One vector selector: metric name and label matchers (name, op, value)."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class PromqlUse:
    """What an expression refers to."""

    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]


_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_BRACES = rf"\{{(?:{_STRING}|[^}}\"'])*\}}"
_MATCHER = re.compile(rf"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*({_STRING})")
_SCANNER = re.compile(
    rf"(?P<string>{_STRING})"
    r"|(?P<comment>#[^\n]*)"
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<clause>\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\))"
    r"|(?P<call>[a-zA-Z_]\w*)\s*(?=\(|(?:by|without)\s*\()"
    rf"|(?P<name>[a-zA-Z_:][\w:]*)\s*(?P<braces>{_BRACES})?"
    rf"|(?P<bare_braces>{_BRACES})"
    r"|(?P<number>[0-9.][\w.+-]*)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def parse_promql(expr: str) -> PromqlUse:
    """List the selectors and grouping labels of a PromQL expression (not a full parser)."""
    selectors = []
    grouping: set[str] = set()
    for match in _SCANNER.finditer(expr):
        if match.group("clause"):
            labels = match.group("labels").split(",")
            grouping.update(label.strip() for label in labels if label.strip())
        name = match.group("name")
        braces = match.group("braces") or match.group("bare_braces")
        if name in KEYWORDS:
            name, braces = None, None
        if name or braces:
            matchers = tuple(
                (m.group(1), m.group(2), m.group(3)[1:-1]) for m in _MATCHER.finditer(braces or "")
            )
            selectors.append(Selector(name or "", matchers))
    return PromqlUse(tuple(selectors), frozenset(grouping))


def known_label_names() -> frozenset[str]:
    """Every label name the contract, Prometheus or the rules can put on a series."""
    names = set(TARGET_LABELS) | {"le", "alertname", "alertstate", "severity"}
    for labels in CONTRACT.values():
        names |= labels
    return frozenset(names)


def check_promql_uses(expr: str, *, where: str) -> list[str]:
    """Problems with the metrics and labels an expression uses, as readable lines."""
    problems = []
    use = parse_promql(expr)
    recorded = recorded_names()
    known = known_label_names()
    for selector in use.selectors:
        metric = selector.metric
        if metric in CONTRACT:
            allowed: frozenset[str] | None = CONTRACT[metric] | TARGET_LABELS
        elif metric in PROMETHEUS_SERIES:
            allowed = PROMETHEUS_SERIES[metric]
            allowed = None if allowed is None else allowed | TARGET_LABELS
        elif metric in recorded:
            allowed = known
        else:
            problems.append(f"{where}: unknown metric {metric!r} in {expr!r}")
            continue
        for label, op, value in selector.matchers:
            if allowed is not None and label not in allowed:
                problems.append(f"{where}: {metric} has no label {label!r}")
            if label in LABEL_VALUES and "$" not in value:
                values = LABEL_VALUES[label]
                if op == "=" and value not in values:
                    problems.append(f"{where}: {label}={value!r} is not one of {values}")
                if op == "=~" and not any(re.fullmatch(value, v) for v in values):
                    problems.append(f"{where}: {label}=~{value!r} matches no known value")
    for label in use.grouping_labels - known:
        problems.append(f"{where}: grouping by unknown label {label!r}")
    return problems


# ---------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${__range}": "1h",
}


def load_dashboard(path: Path) -> dict[str, Any]:
    """Parse one dashboard file."""
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of a dashboard: panels, variables, annotations."""
    title = dashboard["title"]
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{title} / {panel['title']} / {target['refId']}", target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"{title} / annotation {annotation['name']}", annotation["expr"]


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(variable name, the selector inside label_values(...)) of each query variable."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text.strip())
            assert match, f"{variable['name']}: unexpected query {text!r}"
            yield variable["name"], match.group(1)


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables so that promtool can parse the expression."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".*", expr)


# ---------------------------------------------------------------------------
# Live servers: real Prometheus and Alertmanager on free loopback ports.
# ---------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(url: str, body: Any = None) -> Any:
    """GET (or POST a JSON body to) a loopback URL and decode the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback URLs only
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return json.loads(text) if text else None


@contextmanager
def server_process(args: list[str], *, log: Path, ready_url: str) -> Iterator[None]:
    """Run a server until the block ends; fail with its log if it does not get ready."""
    with log.open("w") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(ready_url, timeout=1).close()  # noqa: S310
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{args[0]} did not get ready:\n{log.read_text()}")
                    time.sleep(0.2)
            yield
        finally:
            stop(process)


@contextmanager
def alertmanager_server(workdir: Path, config: Path = ALERTMANAGER_CONFIG) -> Iterator[str]:
    """A real Alertmanager with `config`; yields its base URL."""
    binary = require_tool("prometheus-alertmanager", "alertmanager")
    port = free_port()
    storage = workdir / "alertmanager-data"
    storage.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with server_process(args, log=workdir / "alertmanager.log", ready_url=f"{url}/-/ready"):
        yield url


@contextmanager
def prometheus_server(
    workdir: Path, *, exporter: str, rules: Path, alertmanager: str | None = None
) -> Iterator[str]:
    """A real Prometheus scraping `exporter` (host:port) every second as job oms-exporter."""
    binary = require_tool("prometheus")
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "oms-exporter", "static_configs": [{"targets": [exporter]}]}
        ],
    }
    if alertmanager:
        target = alertmanager.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    args = [
        binary,
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with server_process(args, log=workdir / "prometheus.log", ready_url=f"{url}/-/ready"):
        yield url


def instant_query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """Evaluate a PromQL expression now; the result vector."""
    answer = http_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


class WebhookReceiver:
    """A local HTTP server that records what Alertmanager's webhooks POST: (path, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver path, alert) for every alert delivered so far."""
        return [(path, alert) for path, body in self.received for alert in body["alerts"]]
