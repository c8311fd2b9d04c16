"""`make demo-stack`: scripts/demo_stack.py runs the exporter, a real Prometheus and a real
Alertmanager; a shipped alert reaches Alertmanager and Ctrl-C ends everything."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mixin_support import REPO, http_json, require_tool

SCRIPT = REPO / "scripts/demo_stack.py"


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def wait_for_line(self, pattern: str, *, timeout: float) -> re.Match[str]:
        """The first line (from now) matching `pattern`; fail with the output after `timeout`."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matching {pattern!r} within {timeout:.0f} s:\n{''.join(self.output)}")


def _pump(stack: RunningStack) -> None:
    assert stack.process.stdout is not None
    for line in stack.process.stdout:
        stack.output.append(line)
        stack.lines.put(line)


@pytest.fixture
def stack() -> Iterator[RunningStack]:
    """The demo stack on free ports, short intervals and every `for:` capped at 5 s.

    The cap keeps the test short: the shipped OMSProjectFailed waits `for: 2m`, which
    `make demo-stack` keeps. The test stops the stack itself; this only cleans up after
    a failure.
    """
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    args = [sys.executable, str(SCRIPT), "--scrape-interval", "1s", "--evaluation-interval", "1s"]
    args += ["--alert-for-max", "5s"]
    for name in ("exporter", "prometheus", "alertmanager", "webhook"):
        args += [f"--{name}-port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    running = RunningStack(process)
    threading.Thread(target=_pump, args=(running,), daemon=True).start()
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ended(pid: int) -> bool:
    """The process is gone (or a zombie nobody has reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return bool(re.search(r"^State:\s+Z", status, re.MULTILINE))


def test_a_shipped_alert_reaches_alertmanager_and_sigint_stops_everything(
    stack: RunningStack,
) -> None:
    alertmanager = stack.wait_for_line(r"Alertmanager: (http://\S+)/", timeout=60).group(1)
    state = Path(stack.wait_for_line(r"state:\s+(\S+)", timeout=5).group(1))
    pids = {
        name: int(pid)
        for name, pid in re.findall(
            r"(\w+) (\d+)", stack.wait_for_line(r"pids:\s+(.*)", timeout=5).group(1)
        )
    }
    assert set(pids) == {"exporter", "prometheus", "alertmanager"}
    assert state.is_dir()

    # The demo's FAILED project: its shipped alert, active (not silenced or inhibited).
    deadline = time.monotonic() + 60
    while True:
        alerts = http_json(f"{alertmanager}/api/v2/alerts")
        active = [
            a
            for a in alerts
            if a["labels"]["alertname"] == "OMSProjectFailed" and a["status"]["state"] == "active"
        ]
        if active:
            break
        assert time.monotonic() < deadline, f"no active OMSProjectFailed in {alerts}"
        time.sleep(1)
    assert active[0]["labels"]["project_id"] == "np_demo_failed"
    assert active[0]["labels"]["severity"] == "critical"
    # And Alertmanager delivered it to the sink (after the critical route's group_wait).
    stack.wait_for_line(
        r"webhook /alerts/critical: firing OMSProjectFailed np_demo_failed", timeout=30
    )

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0, "".join(stack.output)
    for name, pid in pids.items():
        assert _ended(pid), f"{name} (pid {pid}) still runs"
    assert not state.exists(), f"{state} was not removed"
