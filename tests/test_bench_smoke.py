"""The benchmark harness, run tiny, so it never rots: every figure comes out a finite number.

No timing is asserted: on a busy CI machine the figures mean nothing, their presence does.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECTS = 50
FIGURES = {
    "projects",
    "interval_s",
    "other_load_cores",
    "limit_cpu_ms_per_1000",
    "limit_cpu_ms_per_1000_requests",
    "limit_wall_ms_per_1000",
    "ours_poll_requests",
    "ours_poll_window_seconds",
    "ours_poll_cpu_ms_per_1000",
    "ours_poll_cpu_ms_per_1000_requests",
    "ours_poll_requests_per_project",
    "ours_round_wall_s",
    "ours_round_wall_ms_per_1000",
    "ours_projects_up",
    "ours_rss_mb",
    "ours_rss_watch_minutes",
    "ours_rss_watch_rounds",
    "ours_rss_watch_start_mb",
    "ours_rss_watch_warm_mb",
    "ours_rss_watch_end_mb",
    "ours_rss_watch_max_mb",
    "ours_rss_watch_slope_mb_per_min",
    "baseline_rss_mb",
    "cpu_ours_over_limit",
    "plain_p50_ours_over_baseline",
    "gzip_p50_ours_over_baseline",
    "ours_cold_samples",
    "ours_cold_p50_ms",
    "ours_cold_max_ms",
} | {
    f"{who}_{figure}"
    for who in ("ours", "baseline")
    for figure in (
        "scrape_samples",
        "plain_p50_ms",
        "plain_p99_ms",
        "gzip_p50_ms",
        "gzip_p99_ms",
        "series",
        "plain_kb",
        "gzip_kb",
    )
}


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run bench/run.py; on timeout SIGTERM it first, so it stops what it started."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "run.py"), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        raise AssertionError(f"bench did not finish in {timeout} s:\n{stderr}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_tiny_benchmark_reports_every_figure_as_a_finite_number(tmp_path: Path) -> None:
    out, data = tmp_path / "RESULTS.md", tmp_path / "results.json"
    done = run_bench(
        *("--projects", str(PROJECTS), "--interval", "1", "--rounds", "2", "--scrapes", "5"),
        *("--scrape-seconds", "20", "--baseline-seconds", "10", "--rss-minutes", "0.05"),
        *("--out", str(out), "--json", str(data)),
        timeout=150,
    )
    assert done.returncode == 0, done.stderr

    (row,) = json.loads(data.read_text())["results"]
    assert set(row) == FIGURES
    not_finite = {key: value for key, value in row.items() if not math.isfinite(value)}
    assert not not_finite
    assert row["ours_projects_up"] == PROJECTS
    # Both expose the same contract: about 25 series per project, plus their own few.
    assert row["ours_series"] > 20 * PROJECTS
    assert row["baseline_series"] > 20 * PROJECTS

    report = out.read_text()
    for heading in ("## Targets", "## Poll rounds", "## /metrics latency", "## Memory"):
        assert heading in report
    assert "bench/run.py --projects 50" in report
    assert "prometheus-client" in report
    assert "ours first scrape after a round" in report
    assert "| met |" in report or "| **not met** |" in report
