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
CONFIGS = ["default", "steps-off"]  # the second is measured at the largest count only
WATCH = {  # RSS over time: the first configuration at the largest count only
    "ours_rss_watch_minutes",
    "ours_rss_watch_rounds",
    "ours_rss_watch_start_mb",
    "ours_rss_watch_warm_mb",
    "ours_rss_watch_end_mb",
    "ours_rss_watch_max_mb",
    "ours_rss_watch_slope_mb_per_min",
}
FIGURES = {
    "projects",
    "interval_s",
    "step_details",
    "other_load_cores",
    "limit_first_round_s",
    "limit_first_round_alone_s",
    "limit_first_round_requests",
    "limit3_first_round_s",
    "limit3_first_round_requests",
    "limit_cpu_ms_per_1000",
    "limit_cpu_ms_per_1000_requests",
    "limit_wall_ms_per_1000",
    "ours_first_round_s",
    "ours_first_round_ready_s",
    "ours_first_round_alone_s",
    "ours_first_round_requests",
    "ours_first_round_requests_per_project",
    "ours_first_round_projects_visible",
    "ours_poll_rounds",
    "ours_poll_requests",
    "ours_poll_window_seconds",
    "ours_poll_cpu_ms_per_1000",
    "ours_poll_cpu_ms_per_1000_requests",
    "ours_poll_requests_per_project",
    "ours_round_wall_s",
    "ours_round_wall_ms_per_1000",
    "ours_projects_up",
    "ours_project_samples",
    "ours_samples_per_project",
    "ours_steps_per_project",
    "ours_steps_min",
    "ours_steps_max",
    "ours_projects_with_steps",
    "ours_rss_mb",
    "baseline_rss_mb",
    "cpu_ours_over_limit",
    "first_round_ours_over_limit",
    "first_round_ours_over_limit3",
    "first_round_alone_ours_over_limit",
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
# The goals, each a row of the report's Targets table.
GOALS = (
    "| OMS requests per project poll, steady state | <= 1.2 |",
    "| first round until every project is visible | <= 1.3x a bare aiohttp loop",
    "| samples per project on /metrics | <= 45 with 10 steps |",
    "| /metrics p50, plain | <= 80 ms with 10 steps |",
    "| /metrics p50, gzip | <= 180 ms with 10 steps |",
    "| RSS | <= 130 MB |",
    "| exporter CPU per project poll vs a bare aiohttp loop | <= 1.3x |",
)


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
        *("--projects", str(PROJECTS), "--configs", ",".join(CONFIGS), "--interval", "3"),
        *("--rounds", "2", "--scrapes", "5", "--cold-scrapes", "2"),
        *("--scrape-seconds", "20", "--baseline-seconds", "10", "--rss-minutes", "0.05"),
        *("--out", str(out), "--json", str(data)),
        timeout=150,
    )
    assert done.returncode == 0, done.stderr

    results = json.loads(data.read_text())["results"]
    assert [result["config"] for result in results] == CONFIGS
    for result in results:
        row = result["figures"]
        watched = WATCH if result["config"] == CONFIGS[0] else set()
        assert set(row) == FIGURES | watched, result["config"]
        not_finite = {key: value for key, value in row.items() if not math.isfinite(value)}
        assert not not_finite, result["config"]
        assert row["ours_projects_up"] == PROJECTS
        assert row["ours_first_round_projects_visible"] == PROJECTS
        assert row["ours_poll_rounds"] >= 2
        # The first round asks every project's progress, at least.
        assert result["first_round_requests"]["DescribeProjectProgress"] == PROJECTS
        assert sum(result["window_requests"].values()) == row["ours_poll_requests"]
        assert set(result["examples"]) == {"migration", "sync"}
        # Both expose the same contract, about 15 to 40 samples per project.
        assert row["ours_samples_per_project"] > 10
        assert row["baseline_series"] > 10 * PROJECTS
    default, steps_off = (result["figures"] for result in results)
    assert default["step_details"] == 1
    assert default["ours_steps_per_project"] > 0
    assert steps_off["step_details"] == 0
    assert steps_off["ours_projects_with_steps"] == 0
    assert "DescribeProjectSteps" not in results[1]["window_requests"]

    report = out.read_text()
    for heading in (
        "## Configurations",
        "## Targets",
        "## Requests to OMS",
        "## First round",
        "## Poll rounds",
        "## /metrics latency",
        "## Samples per project by metric",
        "## Memory",
        "## How it is measured",
    ):
        assert heading in report
    for goal in GOALS:
        assert goal in report
    assert "bench/run.py --projects 50" in report
    assert "prometheus-client" in report
    assert "ours first scrape after a round" in report
    assert "| met |" in report or "| **not met** |" in report
