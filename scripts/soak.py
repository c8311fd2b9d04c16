"""Soak: 1,000 projects at a 1 s interval with faults for a few minutes; report RSS and errors.

Not a unit test: run it by hand or with `make soak`; it appends its figures to
scripts/SOAK.md. Bounded in time; every process it starts is ended by pid.

    .venv/bin/python scripts/soak.py --projects 1000 --minutes 3 --fault-rate 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def start(
    args: list[str], env: dict[str, str], pattern: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a process logging to a file (a pipe nobody reads would block it when full)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "oms_exporter", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"process did not start: {log.read_text(errors='replace')}")


def scrape(url: str) -> tuple[float, str]:
    started = time.monotonic()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    return time.monotonic() - started, body


def errors_by_reason(body: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("oms_project_poll_errors_total{"):
            reason = re.search(r'reason="([^"]+)"', line)
            if reason:
                totals[reason.group(1)] = totals.get(reason.group(1), 0) + float(line.split()[-1])
    return totals


# Every hostile answer the simulator can act out, each for its own project (issue 11):
# the soak must show them contained while the other projects keep being polled.
HOSTILE_FAULTS = (
    "surrogate_id", "surrogate_name", "surrogate_status", "huge_number", "deep_nesting",
    "deep_error_body", "huge_total", "gzip_bomb", "millisecond_checkpoint", "many_steps",
    "redirect", "oversized",
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=HERE / "SOAK.md")
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false",
        help="leave out the hostile answers (one project per fault)",
    )  # fmt: skip
    options = parser.parse_args()
    hostile = [
        arg
        for index, fault in enumerate(HOSTILE_FAULTS if options.hostile else (), start=1)
        for arg in ("--fault", f"p_sim_{index:06d}={fault}")
    ]
    logs = Path(tempfile.mkdtemp(prefix="oms-soak-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    sim, sim_url = start(
        ["simulate", "--port", "0", "--scenario", "bulk", "--projects", str(options.projects),
         "--fault-rate", str(options.fault_rate), "--password", "soak-pass", *hostile],
        base_env,
        r"listening on (http://\S+)",
        logs / "simulator.log",
    )  # fmt: skip
    ids = ",".join(f"p_sim_{i:06d}" for i in range(1, options.projects + 1))
    env = {
        **base_env,
        "OMS_EXPORTER_OMS_URL": sim_url,
        "OMS_EXPORTER_OMS_USERNAME": "admin",
        "OMS_EXPORTER_OMS_PASSWORD": "soak-pass",
        "OMS_EXPORTER_PROJECT_IDS": ids,
        "OMS_EXPORTER_POLL_INTERVAL": "1",
        "OMS_EXPORTER_REQUEST_TIMEOUT": "2",
        "OMS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
        "OMS_EXPORTER_STEP_DETAILS": "false",  # the progress API only: one request per project
    }
    exporter = None
    try:
        exporter, address = start([], env, r"listening on (\S+?:\d+)", logs / "exporter.log")
        url = "http://" + address
        time.sleep(10)  # warm-up: detection, first rounds, caches filled
        rss_start = rss_mib(exporter.pid)
        samples = []
        slowest = 0.0
        deadline = time.monotonic() + options.minutes * 60
        while time.monotonic() < deadline:
            seconds, body = scrape(url)
            slowest = max(slowest, seconds)
            samples.append((time.monotonic(), rss_mib(exporter.pid)))
            time.sleep(5)
        rounds = re.search(r"^oms_exporter_poll_rounds_total (\S+)", body, re.M)
        up = sum(1 for line in body.splitlines()
                 if line.startswith("oms_project_up{") and line.endswith(" 1.0"))  # fmt: skip
        rss_end = rss_mib(exporter.pid)
        alive = exporter.poll() is None
        requests = json.loads(
            urllib.request.urlopen(sim_url + "/_sim/requests", timeout=10).read()  # noqa: S310
        )["total"]
    finally:
        for process in (exporter, sim):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    report = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"`{' '.join(['.venv/bin/python', 'scripts/soak.py', *sys.argv[1:]])}` on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n\n"
        f"| figure | value |\n|---|---|\n"
        f"| projects, interval, fault rate | {options.projects}, 1 s, {options.fault_rate} |\n"
        f"| hostile answers (one project each) | {len(hostile) // 2}: "
        f"{', '.join(HOSTILE_FAULTS) if hostile else 'none'} |\n"
        f"| duration after warm-up | {options.minutes} min |\n"
        f"| exporter alive at the end | {alive} |\n"
        f"| poll rounds completed | {rounds.group(1) if rounds else '?'} |\n"
        f"| OMS requests answered by the simulator | {requests} |\n"
        f"| projects up at the last scrape | {up} / {options.projects} |\n"
        f"| poll errors by reason | {errors_by_reason(body)} |\n"
        f"| RSS after warm-up / at the end | {rss_start:.1f} MiB / {rss_end:.1f} MiB |\n"
        f"| RSS growth | {rss_end - rss_start:+.1f} MiB |\n"
        f"| RSS min / max over the run | {min(r for _, r in samples):.1f} / "
        f"{max(r for _, r in samples):.1f} MiB |\n"
        f"| slowest /metrics during the run | {slowest * 1000:.0f} ms |\n"
        f"| exporter log lines (state changes only) | "
        f"{len((logs / 'exporter.log').read_text(errors='replace').splitlines())} |\n"
    )
    with options.out.open("a", encoding="utf-8") as out:
        out.write(report)
    print(report)
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
