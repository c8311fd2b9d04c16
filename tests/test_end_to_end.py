"""The real programs: simulator process -> exporter process -> HTTP scrapes."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from tests.processes import (
    SIM_PASSWORD,
    exporter,
    get,
    metric_value,
    post_json,
    ready,
    scrape,
    simulator,
    started,
    stop,
    wait_for,
)

DEMO = [
    "np_demo_migration",
    "np_demo_sync",
    "np_demo_failed",
    "np_demo_suspended",
    "np_demo_finished",
    "np_demo_sybase",
]


@pytest.mark.parametrize("api", ["v4", "v3"])
def test_every_demo_project_is_exported_with_its_values(api: str):
    with simulator("--api", api) as oms, exporter(oms.url, [*DEMO, "np_missing"]) as exp:
        wait_for(lambda: ready(exp.url))
        body = scrape(exp.url)
        value = lambda name, **labels: metric_value(body, name, **labels)  # noqa: E731

        for project in DEMO:
            assert value("oms_project_up", project_id=project) == 1.0, project
        assert value("oms_project_status", project_id="np_demo_failed", status="FAILED") == 1.0
        assert value("oms_project_status", project_id="np_demo_failed", status="RUNNING") is None
        statuses = [line for line in body.splitlines() if line.startswith("oms_project_status{")]
        assert len(statuses) == len(DEMO)  # one series per project, its status a label
        assert value("oms_project_status", project_id="np_demo_suspended", status="SUSPEND") == 1
        assert value("oms_project_status", project_id="np_demo_finished", status="FINISHED") == 1
        assert value("oms_project_full_progress_ratio", project_id="np_demo_finished") == 1.0
        assert 0 < value("oms_project_full_progress_ratio", project_id="np_demo_failed") < 1
        lag = value("oms_project_incr_sync_lag_seconds", project_id="np_demo_sync")
        assert lag is not None
        assert 0 <= lag < 200
        # Sybase checkpoint: no lag, but the project's other values are there.
        assert value("oms_project_incr_sync_lag_seconds", project_id="np_demo_sybase") is None
        assert value("oms_project_full_progress_ratio", project_id="np_demo_sybase") == 1.0
        assert value("oms_project_up", project_id="np_missing") == 0.0
        assert value("oms_project_poll_errors_total", project_id="np_missing", reason="not_found")
        expected_api = {"v4": "v4", "v3": "v3-sync"}[api]
        assert value("oms_project_info", project_id="np_demo_sync", api=expected_api, kind="sync")
        assert value("oms_up") == 1.0
        assert value("oms_exporter_poll_rounds_total") >= 1

        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing: run `make test`"
        check = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr

        landing = get(exp.url + "/")[1]
        assert "np_demo_failed" in landing
        assert "FAILED" in landing
        for text in (body, landing, exp.text()):
            assert SIM_PASSWORD not in text


def test_hanging_project_delays_neither_others_nor_metrics():
    with simulator() as oms, exporter(oms.url, DEMO, OMS_EXPORTER_REQUEST_TIMEOUT="3") as exp:
        wait_for(lambda: ready(exp.url))
        post_json(oms.url + "/_sim/projects/np_demo_sync", {"fault": "hang"})
        before = metric_value(
            scrape(exp.url), "oms_project_last_success_timestamp_seconds",
            project_id="np_demo_failed",
        )  # fmt: skip
        slowest = 0.0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started_at = time.monotonic()
            body = scrape(exp.url)
            slowest = max(slowest, time.monotonic() - started_at)
            time.sleep(0.1)
        assert slowest < 0.5, f"/metrics took {slowest:.2f}s while a project hung"
        after = metric_value(
            body, "oms_project_last_success_timestamp_seconds", project_id="np_demo_failed"
        )
        assert after is not None
        assert before is not None
        assert after > before
        assert metric_value(body, "oms_project_up", project_id="np_demo_sync") == 0.0
        assert metric_value(
            body, "oms_project_poll_errors_total", project_id="np_demo_sync", reason="timeout"
        )


def test_failing_project_goes_down_with_reason_and_comes_back():
    with simulator() as oms, exporter(oms.url, DEMO) as exp:
        wait_for(lambda: ready(exp.url))
        post_json(oms.url + "/_sim/projects/np_demo_finished", {"fault": "http_502_html"})

        def down() -> bool:
            body = scrape(exp.url)
            return metric_value(body, "oms_project_up", project_id="np_demo_finished") == 0.0

        wait_for(down)
        body = scrape(exp.url)
        assert metric_value(
            body, "oms_project_poll_errors_total", project_id="np_demo_finished", reason="http"
        )
        assert metric_value(body, "oms_project_up", project_id="np_demo_sync") == 1.0
        post_json(oms.url + "/_sim/projects/np_demo_finished", {"fault": "none"})
        wait_for(lambda: not down())
        assert "project np_demo_finished is down" in exp.text()
        assert "project np_demo_finished is up" in exp.text()


def test_wrong_password_reads_auth_and_leaks_nothing():
    with (
        simulator() as oms,
        exporter(oms.url, DEMO[:2], OMS_EXPORTER_OMS_PASSWORD="wrong-Secret-123") as exp,
    ):
        wait_for(lambda: ready(exp.url))
        body = scrape(exp.url)
        assert metric_value(body, "oms_project_up", project_id="np_demo_sync") == 0.0
        assert metric_value(
            body, "oms_project_poll_errors_total", project_id="np_demo_sync", reason="auth"
        )
        landing = get(exp.url + "/")[1]
        for text in (body, landing, exp.text()):
            assert "wrong-Secret-123" not in text


def test_content_negotiation_gzip_and_openmetrics():
    with simulator() as oms, exporter(oms.url, DEMO[:2]) as exp:
        wait_for(lambda: ready(exp.url))
        request = urllib.request.Request(  # noqa: S310 - loopback
            exp.url + "/metrics", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b"oms_project_up{" in gzip.decompress(response.read())
        status, body = get(
            exp.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert status == 200
        assert body.endswith("# EOF\n")
        families = {family.name: family for family in parse_om(body)}
        assert families["oms_project_up"].type == "gauge"
        up = {sample.labels["project_id"] for sample in families["oms_project_up"].samples}
        assert up == set(DEMO[:2])
        assert get(exp.url + "/healthz")[0] == 200


def test_sigterm_stops_quickly_with_exit_0():
    with simulator() as oms, exporter(oms.url, DEMO) as exp:
        wait_for(lambda: ready(exp.url))
        started_at = time.monotonic()
        assert stop(exp.process) == 0
        assert time.monotonic() - started_at < 5


def test_demo_mode_serves_the_simulated_projects():
    args = ["--demo", "--listen-address", "127.0.0.1:0"]
    with started(args, url_pattern=r"listening on (\S+?:\d+)") as demo:
        url = "http://" + demo.url
        wait_for(lambda: ready(url))
        body = scrape(url)
        assert metric_value(body, "oms_project_up", project_id="np_demo_migration") == 1.0
        assert metric_value(
            body, "oms_project_status", project_id="np_demo_failed", status="FAILED"
        )
