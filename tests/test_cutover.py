"""`oms-exporter cutover` as a process against the real simulator: every exit code, --json
agreeing with /metrics of an exporter polling the same OMS, and --wait with --timeout.

Each run is bounded (subprocess.run's timeout kills it); the simulator and the exporter are
stopped by their context managers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oms_exporter.config import load_config
from oms_exporter.cutover import StatusLine, choose_target, parse_duration, table_line
from oms_exporter.model import VerifiedTable
from oms_exporter.readiness import BLOCKERS
from oms_exporter.settings import ConfigError
from tests.processes import (
    SIM_PASSWORD,
    Running,
    exporter,
    metric_value,
    post_json,
    scrape,
    simulator,
    wait_for,
)

RUN_TIMEOUT_SECONDS = 40
# Five minutes in: np_demo_ready is ready (since 180 s), np_demo_migration and
# np_demo_lag_wave lag about 90 s (until 486 s), np_demo_inconsistent never is.
ADVANCE_SECONDS = 300
USERNAME = "cutover-user"


@pytest.fixture(scope="module")
def oms() -> Iterator[Running]:
    with simulator("--username", USERNAME) as running:
        post_json(running.url + "/_sim/advance", {"seconds": ADVANCE_SECONDS})
        yield running


def environment(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    return {
        **base,
        "OMS_EXPORTER_OMS_URL": url,
        "OMS_EXPORTER_OMS_NAME": "demo",
        "OMS_EXPORTER_OMS_USERNAME": USERNAME,
        "OMS_EXPORTER_OMS_PASSWORD": SIM_PASSWORD,
        "OMS_EXPORTER_POLL_INTERVAL": "1",
        "OMS_EXPORTER_REQUEST_TIMEOUT": "2",
        **extra,
    }


def cutover(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command to its end (killed past RUN_TIMEOUT_SECONDS)."""
    return subprocess.run(
        [sys.executable, "-m", "oms_exporter", "cutover", *args],
        env=environment(url, **env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def assert_nothing_secret(url: str, run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout + run.stderr
    for secret in (SIM_PASSWORD, USERNAME, url.removeprefix("http://")):
        assert secret not in output, secret
    assert "Traceback" not in output


def test_a_ready_migration_exits_0_with_every_check_passed(oms: Running) -> None:
    run = cutover(oms.url, "np_demo_ready")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Cut-over check of np_demo_ready (payments mysql to ob")
    assert "on OMS demo at " in lines[0]
    marks = {line.split()[1]: line.split()[0] for line in lines[1 : 1 + len(BLOCKERS)]}
    assert marks == dict.fromkeys(BLOCKERS, "passed")
    assert "Full verification: 0 different rows in 8 tables" in run.stdout
    assert lines[-1] == "Verdict: READY for cut-over"
    assert_nothing_secret(oms.url, run)


def test_inconsistent_and_sync_projects_exit_1_and_say_why(oms: Running) -> None:
    run = cutover(oms.url, "np_demo_inconsistent")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "  FAILED   verification_inconsistent  17 different rows in 8 tables" in run.stdout
    assert "Full verification: 17 different rows in 8 tables; the 2 to look at first:" in (
        run.stdout
    )
    assert (
        "  db_000.table_00000 -> db_000: INCONSISTENT, 12 different rows "
        "(8 mismatched, 4 only in the source)"
    ) in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "Verdict: NOT READY, blocked by verification_inconsistent"
    )
    sync = cutover(oms.url, "np_demo_sync")
    assert sync.returncode == 1
    assert sync.stdout.splitlines()[-1].startswith("Verdict: NOT APPLICABLE")
    for done in (run, sync):
        assert_nothing_secret(oms.url, done)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["np_demo_ready"], {"OMS_EXPORTER_OMS_URL": ""}, "oms_url (OMS_EXPORTER_OMS_URL"),
        (["np_demo_ready", "--wait", "--timeout", "5x"], {}, "--timeout"),
        (["np_demo_ready", "--oms", "west"], {}, "--oms 'west': no OMS of that name"),
        (["np_demo_ready", "--check-config"], {}, "--check-config does not apply"),
        (["np_demo_ready", "--poll-interval", "0"], {}, "poll_interval"),
        ([], {}, "PROJECT_ID"),
    ],
    ids=["no_url", "bad_timeout", "unknown_oms", "check_config", "bad_setting", "no_project"],
)
def test_configuration_errors_exit_2_with_one_line(
    oms: Running, args: list[str], env: dict[str, str], says: str
) -> None:
    run = cutover(oms.url, *args, **env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith("oms-exporter cutover: ")
    assert says in line
    assert_nothing_secret(oms.url, run)


def test_an_unknown_project_or_an_unreachable_oms_exits_3(oms: Running) -> None:
    missing = cutover(oms.url, "np_missing", "--json")
    assert missing.returncode == 3, missing.stdout + missing.stderr
    answer = json.loads(missing.stdout)
    assert (answer["project_id"], answer["ready"], answer["error"]["reason"]) == (
        "np_missing",
        False,
        "not_found",
    )
    (line,) = missing.stderr.splitlines()
    assert line.startswith("oms-exporter cutover: cannot check np_missing on OMS demo: not_found")
    assert_nothing_secret(oms.url, missing)
    closed = cutover("http://127.0.0.1:1", "np_demo_ready")
    assert closed.returncode == 3, closed.stdout + closed.stderr
    assert "connection" in closed.stderr
    assert closed.stdout == ""


def blockers_on_metrics(body: str, project_id: str) -> tuple[float | None, set[str]]:
    ready = metric_value(body, "oms_project_cutover_ready", project_id=project_id)
    held = set()
    for blocker in BLOCKERS:
        value = metric_value(
            body, "oms_project_cutover_blocked", project_id=project_id, blocker=blocker
        )
        if value == 1.0:
            held.add(blocker)
    return ready, held


def test_json_agrees_with_the_metrics_of_an_exporter_polling_the_same_oms(oms: Running) -> None:
    ids = ["np_demo_ready", "np_demo_inconsistent", "np_demo_migration", "np_demo_lag_wave"]
    env = {k: v for k, v in environment(oms.url).items() if k.startswith("OMS_EXPORTER_")}
    env.pop("OMS_EXPORTER_OMS_URL")
    with exporter(oms.url, ids, **env) as exp:

        def verified() -> bool:
            body = scrape(exp.url)
            ready = {p: metric_value(body, "oms_project_cutover_ready", project_id=p) for p in ids}
            different = metric_value(
                body, "oms_project_full_verify_different_rows", project_id="np_demo_inconsistent"
            )
            return None not in ready.values() and ready["np_demo_ready"] == 1.0 and different == 17

        wait_for(verified, timeout=20)
        before = scrape(exp.url)
        runs = {project_id: cutover(oms.url, project_id, "--json") for project_id in ids}
        after = scrape(exp.url)
    for project_id, run in runs.items():
        answer: dict[str, Any] = json.loads(run.stdout)
        assert set(answer) >= {
            "project_id", "oms", "ready", "blockers", "checks", "verification", "checked_at",
        }  # fmt: skip
        assert (answer["project_id"], answer["oms"]) == (project_id, "demo")
        assert run.returncode == (0 if answer["ready"] else 1)
        assert [check["blocker"] for check in answer["checks"]] == list(BLOCKERS)
        held = {check["blocker"] for check in answer["checks"] if check["blocked"]}
        assert set(answer["blockers"]) == held
        for body in (before, after):
            ready, blocked = blockers_on_metrics(body, project_id)
            assert ready == (1.0 if answer["ready"] else 0.0), project_id
            assert blocked == held, project_id
        assert_nothing_secret(oms.url, run)
    assert json.loads(runs["np_demo_ready"].stdout)["ready"] is True
    inconsistent = json.loads(runs["np_demo_inconsistent"].stdout)
    assert inconsistent["blockers"] == ["verification_inconsistent"]
    verification = inconsistent["verification"]
    assert (verification["different_rows"], verification["table_count"]) == (17, 8)
    assert [t["source_table"] for t in verification["worst_tables"]] == [
        "table_00000",
        "table_00007",
    ]
    assert json.loads(runs["np_demo_migration"].stdout)["blockers"] == ["lag"]


def test_wait_with_a_timeout_gives_up_not_ready(oms: Running) -> None:
    started = time.monotonic()
    run = cutover(oms.url, "np_demo_inconsistent", "--wait", "--timeout", "3s")
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    assert 3 <= elapsed < 20
    lines = run.stdout.splitlines()
    waiting = [line for line in lines if line.startswith("waiting ")]
    assert len(waiting) >= 2  # not a terminal: one line per check
    assert all("blocked by verification_inconsistent" in line for line in waiting)
    assert waiting[0].endswith("left")
    assert lines[-1] == "Verdict: NOT READY, blocked by verification_inconsistent"
    assert_nothing_secret(oms.url, run)


def test_wait_ends_ready_as_soon_as_the_migration_is() -> None:
    # 60 times faster: np_demo_ready is ready 3 s after its lifecycle starts.
    with simulator("--username", USERNAME, "--time-scale", "60") as fast:
        post_json(fast.url + "/_sim/reset", {})
        run = cutover(fast.url, "np_demo_ready", "--wait", "--timeout", "30s", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout)  # stdout holds only the JSON; the waiting went to stderr
    assert answer["ready"] is True
    assert 0 < answer["waited_seconds"] < 30
    assert "waiting " in run.stderr


# --- the pieces, in-process ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45), ("1.5m", 90),
     ("500ms", 0.5), ("1d", 86400)],
)  # fmt: skip
def test_durations_read_like_prometheus(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-3s", "0s", "1h 30m", "s30"])
def test_odd_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_the_oms_is_the_one_named_the_only_one_or_the_one_listing_the_project(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("OMS_EXPORTER_"):
            monkeypatch.delenv(name)
    config_file = tmp_path / "targets.yml"
    config_file.write_text(
        "targets:\n"
        "  - {name: east, url: 'http://east.internal:8089', project_ids: [np_east]}\n"
        "  - {name: west, url: 'http://west.internal:8089', project_ids: [np_west]}\n"
    )
    config = load_config({}, config_file)
    assert choose_target(config, "west", "np_east").name == "west"
    assert choose_target(config, None, "np_west").name == "west"
    with pytest.raises(ConfigError, match=r"several OMS are configured \(east, west\)"):
        choose_target(config, None, "np_elsewhere")
    with pytest.raises(ConfigError, match="no OMS of that name"):
        choose_target(config, "north", "np_east")


def test_names_from_oms_cannot_drive_the_terminal() -> None:
    table = VerifiedTable(
        "db\x1b[2J", "t\r\x07", "db", "INCONSISTENT", "RUNNING", 0.4, mismatched_rows=3
    )
    assert (
        table_line(table)
        == "db?[2J.t?? -> db: INCONSISTENT (RUNNING, 40 %), 3 different rows (3 mismatched)"
    )


def test_the_waiting_line_is_rewritten_in_place_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    line = StatusLine(terminal)
    line.show("waiting 1 s: blocked by lag (lag 45 s of at most 30 s)")
    line.show("waiting 2 s: blocked by lag")
    line.end()
    first, second = terminal.getvalue().split("\r")[1:]
    assert second.rstrip("\n").startswith("waiting 2 s: blocked by lag ")
    assert len(second.rstrip("\n")) == len(first)  # the longer line is blanked out
    assert terminal.getvalue().endswith("\n")


def test_an_internal_error_is_exit_3_in_one_line_never_not_ready(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 means "not ready": a bug must not be mistaken for a verdict."""
    from oms_exporter import cutover as command

    async def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("a bug")

    for name in list(os.environ):
        if name.startswith("OMS_EXPORTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(command, "run", broken)
    code = command.main(["np_demo_ready", "--oms-url", "http://127.0.0.1:1"])
    assert code == command.EXIT_UNREACHABLE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["oms-exporter cutover: cannot tell: internal error: RuntimeError"]
