"""Failure as tested behaviour, with real processes: outages, freezes, reloads, protection."""

from __future__ import annotations

import json
import os
import signal
import ssl
import time
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.deploy_support import free_port
from tests.processes import (
    SIM_PASSWORD,
    all_up,
    exporter,
    get,
    metric_value,
    post_json,
    ready,
    scrape,
    simulator,
    started,
    wait_for,
)

DEMO = ["np_demo_migration", "np_demo_sync", "np_demo_failed", "np_demo_finished"]


def timed_scrape(url: str) -> tuple[float, str]:
    started = time.monotonic()
    body = scrape(url)
    return time.monotonic() - started, body


def test_oms_down_then_back():
    with simulator() as oms, exporter(oms.url, DEMO) as exp:
        wait_for(lambda: all_up(exp.url, DEMO))
        post_json(oms.url + "/_sim/down", {"down": True})
        wait_for(lambda: metric_value(scrape(exp.url), "oms_up") == 0.0)
        # FINISHED projects, polled every 10th round, follow their OMS down a round later.
        wait_for(
            lambda: all(
                metric_value(scrape(exp.url), "oms_project_up", project_id=pid) == 0.0
                for pid in DEMO
            ),
            timeout=3,
        )
        requests_before = json.loads(get(oms.url + "/_sim/requests")[1])["total"]
        time.sleep(3)  # three rounds at a 1 s interval
        requests_after = json.loads(get(oms.url + "/_sim/requests")[1])["total"]
        assert requests_after - requests_before <= 6, "probe once per round, not per project"
        post_json(oms.url + "/_sim/down", {"down": False})
        back = time.monotonic()
        wait_for(lambda: all_up(exp.url, DEMO), timeout=5)
        assert time.monotonic() - back <= 2.5  # within two 1 s intervals
        assert "unreachable" in exp.text()
        assert "reachable again" in exp.text()


def test_frozen_oms_never_looks_healthy():
    with (
        simulator() as oms,
        exporter(
            oms.url, DEMO, OMS_EXPORTER_REQUEST_TIMEOUT="1", OMS_EXPORTER_STALE_AFTER="4"
        ) as exp,
    ):
        wait_for(lambda: all_up(exp.url, DEMO))
        first = metric_value(scrape(exp.url), "oms_project_incr_sync_lag_seconds",
                             project_id="np_demo_sync")  # fmt: skip
        assert first is not None
        os.kill(oms.process.pid, signal.SIGSTOP)
        try:
            slowest = 0.0
            lags = []
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                seconds, body = timed_scrape(exp.url)
                slowest = max(slowest, seconds)
                lags.append(
                    metric_value(
                        body, "oms_project_incr_sync_lag_seconds", project_id="np_demo_sync"
                    )
                )
                time.sleep(0.25)
            assert slowest < 0.5
            present = [lag for lag in lags if lag is not None]
            assert present == sorted(present), "lag froze or went back while OMS was frozen"
            assert lags[-1] is None, "values of a frozen OMS must be dropped after stale_after"
            assert metric_value(body, "oms_project_up", project_id="np_demo_sync") == 0.0
        finally:
            os.kill(oms.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for(lambda: all_up(exp.url, DEMO), timeout=6)
        assert time.monotonic() - resumed < 4


def test_checkpoint_in_future_gives_zero_lag_and_reports_skew():
    with simulator() as oms, exporter(oms.url, ["np_demo_sync"]) as exp:
        post_json(oms.url + "/_sim/projects/np_demo_sync", {"fault": "future_checkpoint"})

        def skewed() -> bool:
            return (metric_value(scrape(exp.url), "oms_clock_skew_seconds") or 0) > 3000

        wait_for(skewed)
        body = scrape(exp.url)
        assert (
            metric_value(body, "oms_project_incr_sync_lag_seconds", project_id="np_demo_sync") == 0
        )


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"deleted": True}, "not_found"), ({"fault": "oversized"}, "decode")],
)
def test_project_failure_mid_run_is_classified(change: dict[str, object], reason: str):
    with simulator() as oms, exporter(oms.url, DEMO) as exp:
        wait_for(lambda: all_up(exp.url, DEMO))
        post_json(oms.url + "/_sim/projects/np_demo_sync", change)

        def failed() -> bool:
            return bool(
                metric_value(
                    scrape(exp.url),
                    "oms_project_poll_errors_total",
                    project_id="np_demo_sync",
                    reason=reason,
                )
            )

        wait_for(failed)
        assert all_up(exp.url, [pid for pid in DEMO if pid != "np_demo_sync"])


def write_config(path: Path, ids: list[str], oms_url: str, password: str, **extra: object) -> None:
    lines = [
        f"oms_url: {oms_url}",
        "oms_username: admin",
        f"oms_password: {password}",
        f"project_ids: [{', '.join(ids)}]",
        "poll_interval: 1",
        "listen_address: 127.0.0.1:0",
        *(f"{key}: {value}" for key, value in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


def test_reload_applies_good_config_and_keeps_running_on_bad(tmp_path: Path):
    config = tmp_path / "oms.yml"
    with simulator() as oms:
        write_config(config, ["np_demo_sync", "np_demo_failed"], oms.url, "wrong-Pass-1")
        args = ["--config", str(config)]
        with started(args, url_pattern=r"listening on (\S+?:\d+)") as exp:
            exp.url = "http://" + exp.url
            wait_for(lambda: ready(exp.url))
            body = scrape(exp.url)
            assert metric_value(body, "oms_project_poll_errors_total", project_id="np_demo_sync",
                                reason="auth")  # fmt: skip

            # Credentials fixed and a project swapped, by SIGHUP.
            write_config(config, ["np_demo_sync", "np_demo_finished"], oms.url, SIM_PASSWORD)
            exp.process.send_signal(signal.SIGHUP)
            wait_for(lambda: all_up(exp.url, ["np_demo_sync", "np_demo_finished"]))
            body = scrape(exp.url)
            assert 'project_id="np_demo_failed"' not in body
            assert metric_value(body, "oms_exporter_config_last_reload_successful") == 1.0

            # A broken file: the running configuration stays, the gauge says so.
            config.write_text("oms_url: [broken\n")
            request = urllib.request.Request(exp.url + "/-/reload", method="POST")  # noqa: S310
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=5)  # noqa: S310
            assert caught.value.code == 500
            body = scrape(exp.url)
            assert metric_value(body, "oms_exporter_config_last_reload_successful") == 0.0
            assert all_up(exp.url, ["np_demo_sync", "np_demo_finished"])
            for text in (body, exp.text(), get(exp.url + "/")[1]):
                assert SIM_PASSWORD not in text
                assert "wrong-Pass-1" not in text

            # A CA file that exists but is not PEM, twice by SIGHUP: refused, polling goes
            # on, and the signal handler survives to apply the good file that follows.
            bad_ca = tmp_path / "ca.pem"
            bad_ca.write_text("not a certificate\n")
            https = oms.url.replace("http://", "https://")
            write_config(config, ["np_demo_sync"], https, SIM_PASSWORD, tls_ca_file=bad_ca)
            for _ in range(2):
                exp.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "holds no PEM certificate" in exp.text())
            rounds = metric_value(scrape(exp.url), "oms_exporter_poll_rounds_total") or 0.0
            wait_for(lambda: (metric_value(scrape(exp.url), "oms_exporter_poll_rounds_total")
                              or 0.0) > rounds)  # fmt: skip
            assert get(exp.url + "/healthz")[0] == 200
            write_config(config, ["np_demo_sync"], oms.url, SIM_PASSWORD, poll_interval=2)
            exp.process.send_signal(signal.SIGHUP)
            wait_for(lambda: metric_value(scrape(exp.url), "oms_exporter_poll_interval_seconds")
                     == 2.0)  # fmt: skip
            body = scrape(exp.url)
            assert metric_value(body, "oms_exporter_config_last_reload_successful") == 1.0
            assert 'project_id="np_demo_finished"' not in body
        assert exp.process.returncode == 0
        assert "Traceback" not in exp.text()


def test_no_project_reads_down_before_its_first_poll():
    """At start-up, a project whose first answer is slow is absent, never `up 0`."""
    with simulator() as oms:
        post_json(oms.url + "/_sim/projects/np_demo_sync", {"fault": "slow", "slow_seconds": 1})
        with exporter(oms.url, DEMO, OMS_EXPORTER_REQUEST_TIMEOUT="5") as exp:
            bodies: list[str] = []
            deadline = time.monotonic() + 30
            while not all_up(exp.url, DEMO):
                bodies.append(scrape(exp.url))
                assert time.monotonic() < deadline, "the slow project never came up"
        early = bodies[0]
        assert metric_value(early, "oms_project_up", project_id="np_demo_sync") is None
        assert 'project_id="np_demo_sync"' not in early
        for body in bodies:
            assert all(
                metric_value(body, "oms_project_up", project_id=pid) in (None, 1.0) for pid in DEMO
            )


def test_demo_takes_the_listen_address_from_the_environment():
    """--demo changes defaults only: the environment still wins."""
    port = free_port()
    env = {"OMS_EXPORTER_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
    with started(["--demo"], url_pattern=r"listening on (\S+?:\d+)", env=env) as demo:
        assert demo.url == f"127.0.0.1:{port}"
        wait_for(lambda: ready(f"http://127.0.0.1:{port}"))


def test_web_config_requires_basic_auth_over_https(tmp_path: Path, certificate: tuple[Path, Path]):
    cert, key = certificate
    hashed = bcrypt.hashpw(b"scrape-Pa55", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    context = ssl.create_default_context(cafile=str(cert))
    with (
        simulator() as oms,
        exporter(oms.url, DEMO[:1], "--web-config-file", str(web_config)) as exp,
    ):
        url = exp.url.replace("http://", "https://")

        def fetch(path: str, auth: str | None = None) -> int:
            headers = {"Authorization": auth} if auth else {}
            request = urllib.request.Request(url + path, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        import base64

        good = "Basic " + base64.b64encode(b"prometheus:scrape-Pa55").decode()
        bad = "Basic " + base64.b64encode(b"prometheus:guess").decode()
        assert fetch("/metrics") == 401
        assert fetch("/metrics", bad) == 401
        assert fetch("/", bad) == 401
        assert fetch("/metrics", good) == 200
        assert fetch("/healthz") == 200  # probes need no credentials


def test_invalid_web_config_exits_2(tmp_path: Path):
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n  prometheus: plaintext-password\n")
    from tests.test_settings import run_cli

    result = run_cli(
        "--oms-url", "http://x:8089", "--project-ids", "p", "--web-config-file", str(web_config)
    )
    assert result.returncode == 2
    assert "bcrypt" in result.stderr
    assert "plaintext-password" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_json_logs_are_one_object_per_line_without_secrets():
    with (
        simulator() as oms,
        exporter(oms.url, ["np_demo_sync", "nope"], OMS_EXPORTER_LOG_FORMAT="json") as exp,
    ):
        wait_for(lambda: "project nope is down" in exp.text())
    records = [json.loads(line) for line in exp.output if line.startswith("{")]
    down = [r for r in records if r["msg"].startswith("project nope is down")]
    assert down
    assert down[0]["reason"] == "not_found"
    assert all({"time", "level", "msg"} <= set(r) for r in records)
    assert SIM_PASSWORD not in "".join(exp.output)
