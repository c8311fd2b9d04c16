"""Every hostile answer at once, each for its own project among healthy ones, end to end.

The real simulator acts the answers out; the real exporter polls it with discovery on.
Rounds must keep completing, healthy projects stay up with their values, /metrics and
the status page answer (and /metrics passes promtool), and memory stays bounded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.processes import (
    all_up,
    exporter,
    get,
    metric_value,
    post_json,
    scrape,
    simulator,
    wait_for,
)

HEALTHY = ["np_demo_migration", "np_demo_sync", "np_demo_finished"]
# fault -> what the project must read as: a poll-error reason, or "up" (repaired values).
HOSTILE = {
    "surrogate_name": "up",
    "surrogate_status": "up",
    "huge_number": "up",
    "huge_total": "up",
    "many_steps": "up",
    "millisecond_checkpoint": "up",
    "deep_nesting": "decode",
    "deep_error_body": "http",
    "gzip_bomb": "decode",
    "redirect": "http",
    "oversized": "decode",
}
PEAK_RSS_LIMIT_BYTES = 150 * 1024 * 1024


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def rounds(url: str) -> float:
    return metric_value(scrape(url), "oms_exporter_poll_rounds_total") or 0.0


def test_hostile_answers_are_contained_and_healthy_projects_unaffected():
    with simulator("--scenario", "demo") as oms:
        for fault in HOSTILE:
            # In incremental sync (past pre-check, structure and full transfer): checkpoints.
            project = {"id": f"np_{fault}", "kind": "migration", "offset_seconds": 200}
            assert post_json(oms.url + "/_sim/projects", project) in (200, 201)
            assert post_json(oms.url + f"/_sim/projects/np_{fault}", {"fault": fault}) == 200
        ids = [*HEALTHY, *(f"np_{fault}" for fault in HOSTILE)]
        with exporter(oms.url, ids, OMS_EXPORTER_DISCOVERY="true") as exp:
            wait_for(lambda: all_up(exp.url, HEALTHY), timeout=30)
            start = rounds(exp.url)
            wait_for(lambda: rounds(exp.url) >= start + 3, timeout=30)  # polling goes on
            body = scrape(exp.url)
            for pid in HEALTHY:
                assert metric_value(body, "oms_project_up", project_id=pid) == 1.0
            for fault, expected in HOSTILE.items():
                pid = f"np_{fault}"
                up = metric_value(body, "oms_project_up", project_id=pid)
                if expected == "up":
                    assert up == 1.0, (fault, exp.text()[-2000:])
                else:
                    assert up == 0.0, fault
                    errors = metric_value(
                        body, "oms_project_poll_errors_total", project_id=pid, reason=expected
                    )
                    assert errors, (fault, expected)
            lag = metric_value(
                body,
                "oms_project_incr_sync_lag_seconds",
                project_id="np_millisecond_checkpoint",
                direction="forward",
            )
            assert lag is not None
            assert 0 <= lag < 600  # seconds, not 1.7e12
            steps = [
                line
                for line in body.splitlines()
                if line.startswith("oms_project_step_progress_ratio{")
                and 'project_id="np_many_steps"' in line
            ]
            assert 0 < len(steps) <= 64
            assert get(exp.url + "/")[0] == 200
            promtool = shutil.which("promtool")
            assert promtool, "promtool is missing: run `make test`"
            checked = subprocess.run(
                [promtool, "check", "metrics"], input=body, capture_output=True, text=True
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "Traceback" not in exp.text()
            assert peak_rss_bytes(exp.process.pid) < PEAK_RSS_LIMIT_BYTES
