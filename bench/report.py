"""Turn the figures into bench/RESULTS.md: machine, versions, command, tables, targets."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from harness import REPO

Row = dict[str, float]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _git() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "oms_exporter")
    return commit + (" + uncommitted changes in oms_exporter/" if dirty else "")


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": _version("aiohttp"),
        "prometheus_client": _version("prometheus-client"),
        "oms_exporter": _version("oms-exporter"),
        "git": _git(),
    }


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # missing or NaN
        return "-"
    return f"{value:,.{digits}f}"


def _pair(row: Row, first: str, second: str, digits: int = 1) -> str:
    return f"{_f(row.get(first), digits)} / {_f(row.get(second), digits)}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def poll_table(results: list[Row]) -> str:
    header = [
        "projects",
        "interval (s)",
        "requests / project",
        "round wall (s)",
        "wall ms / 1,000 projects",
        "limit wall ms / 1,000 projects",
        "**CPU ms / 1,000 projects**",
        "**limit CPU ms / 1,000 projects**",
        "CPU ms / 1,000 requests, ours / limit",
        "**ours / limit**",
    ]
    rows = [
        [
            f"{int(r['projects']):,}",
            f"{r['interval_s']:g}",
            _f(r["ours_poll_requests_per_project"], 2),
            _f(r["ours_round_wall_s"], 2),
            _f(r["ours_round_wall_ms_per_1000"], 0),
            _f(r["limit_wall_ms_per_1000"], 0),
            _f(r["ours_poll_cpu_ms_per_1000"], 0),
            _f(r["limit_cpu_ms_per_1000"], 0),
            _pair(r, "ours_poll_cpu_ms_per_1000_requests", "limit_cpu_ms_per_1000_requests", 0),
            _f(r["cpu_ours_over_limit"], 2) + "x",
        ]
        for r in results
    ]
    return _table(header, rows)


def scrape_table(results: list[Row]) -> str:
    header = [
        "projects",
        "series ours / baseline",
        "ours KiB plain / gzip",
        "**ours plain p50 / p99**",
        "**ours gzip p50 / p99**",
        "ours first scrape after a round p50 / max",
        "baseline plain p50 / p99",
        "baseline gzip p50 / p99",
        "**baseline / ours (p50 plain, gzip)**",
    ]
    rows = [
        [
            f"{int(r['projects']):,}",
            _pair(r, "ours_series", "baseline_series", 0),
            _pair(r, "ours_plain_kb", "ours_gzip_kb", 0),
            _pair(r, "ours_plain_p50_ms", "ours_plain_p99_ms"),
            _pair(r, "ours_gzip_p50_ms", "ours_gzip_p99_ms"),
            _pair(r, "ours_cold_p50_ms", "ours_cold_max_ms"),
            _pair(r, "baseline_plain_p50_ms", "baseline_plain_p99_ms"),
            _pair(r, "baseline_gzip_p50_ms", "baseline_gzip_p99_ms"),
            f"{_f(1 / r['plain_p50_ours_over_baseline'])}x / "
            f"{_f(1 / r['gzip_p50_ours_over_baseline'])}x",
        ]
        for r in results
    ]
    return _table(header, rows)


def memory_table(results: list[Row]) -> str:
    header = ["projects", "ours RSS after warm-up (MB)", "baseline RSS after warm-up (MB)"]
    rows = [
        [f"{int(r['projects']):,}", _f(r["ours_rss_mb"]), _f(r["baseline_rss_mb"])] for r in results
    ]
    return _table(header, rows)


def _target_row(results: list[Row]) -> Row:
    exact = [r for r in results if r["projects"] == 10_000]
    return exact[0] if exact else max(results, key=lambda r: r["projects"])


def targets(results: list[Row]) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met) for each target of the issue."""
    big = _target_row(results)
    at = f"at {int(big['projects']):,} projects"
    ratios = ", ".join(
        f"{_f(r['cpu_ours_over_limit'], 2)}x at {int(r['projects']):,}" for r in results
    )
    checks: list[tuple[str, str, bool]] = [
        (
            "poll CPU per project <= 1.5x the bare-loop limit",
            f"{_f(big['cpu_ours_over_limit'], 2)}x {at} (all: {ratios})",
            big["cpu_ours_over_limit"] <= 1.5,
        ),
        (
            "/metrics <= 50 ms p50 uncompressed",
            f"{_f(big['ours_plain_p50_ms'])} ms {at}; first scrape after a round "
            f"{_f(big.get('ours_cold_p50_ms'))} ms",
            big["ours_plain_p50_ms"] <= 50,
        ),
        (
            "/metrics <= 150 ms p50 gzip",
            f"{_f(big['ours_gzip_p50_ms'])} ms {at}",
            big["ours_gzip_p50_ms"] <= 150,
        ),
        (
            "/metrics >= 10x faster than the generic baseline",
            f"{_f(1 / big['plain_p50_ours_over_baseline'])}x plain, "
            f"{_f(1 / big['gzip_p50_ours_over_baseline'])}x gzip {at}",
            min(1 / big["plain_p50_ours_over_baseline"], 1 / big["gzip_p50_ours_over_baseline"])
            >= 10,
        ),
    ]
    if "ours_rss_watch_max_mb" in big:
        growth = big["ours_rss_watch_end_mb"] - big["ours_rss_watch_warm_mb"]
        checks.append(
            (
                "RSS <= 120 MB",
                f"max {_f(big['ours_rss_watch_max_mb'])} MB {at}",
                big["ours_rss_watch_max_mb"] <= 120,
            )
        )
        checks.append(
            (
                "RSS flat over time (end - after warm-up <= 5 MB)",
                f"{_f(growth)} MB over {_f(big['ours_rss_watch_minutes'])} min, trend "
                f"{_f(big['ours_rss_watch_slope_mb_per_min'], 2)} MB/min",
                growth <= 5,
            )
        )
    return checks


def _memory_watch(results: list[Row], options: dict[str, Any]) -> str:
    watched = [r for r in results if "ours_rss_watch_max_mb" in r]
    if not watched:
        return "RSS over time was not watched (`--rss-minutes 0`).\n"
    r = watched[0]
    return (
        f"RSS over time at {int(r['projects']):,} projects: polled every "
        f"{r['interval_s']:g} s for {_f(r['ours_rss_watch_minutes'])} minutes "
        f"({int(r['ours_rss_watch_rounds'])} rounds; a bounded run, not hours), scraped with gzip "
        f"every {r['interval_s']:g} s: {_f(r['ours_rss_watch_start_mb'])} MB at the start, "
        f"{_f(r['ours_rss_watch_warm_mb'])} MB after the warm-up (the first third, at most a "
        f"minute), {_f(r['ours_rss_watch_end_mb'])} MB at the end, max "
        f"{_f(r['ours_rss_watch_max_mb'])} MB; least-squares trend after the warm-up "
        f"{_f(r['ours_rss_watch_slope_mb_per_min'], 2)} MB/min.\n"
    )


METHOD = """\
- Everything runs on 127.0.0.1 of this one machine: the simulator (`oms-exporter simulate
  --scenario bulk --api v4`), the program measured and the benchmark's client share its cores.
- **Poll round**: oms-exporter with its default settings, step details {steps},
  polling every *interval* s (table) with concurrency {concurrency}. After its first round (which
  also asks `DescribeProject` once per project), {rounds} rounds are measured, each from a
  quiet moment to a quiet moment, seen on the simulator's request counter
  (`/_sim/requests/total`), without touching the exporter; its CPU is read from
  `/proc/PID/task/*/schedstat` (ns); the figure is the median round.
  Round wall time is the exporter's own `oms_exporter_last_poll_round_duration_seconds`.
- **Limit**: `bench/bare_loop.py` sends the requests oms-exporter sent in one round (the
  same Actions, counted per Action on the simulator), `POST /api/v2?Action=...` `{{"id":
  ...}}` with Basic auth, from one aiohttp session (connector limit = concurrency =
  {concurrency}), reads each body and drops it. One warm-up round, then {rounds} rounds; its
  own CPU time (`time.process_time`) of the median round. Both per 1,000 projects per round.
- **/metrics**: fresh connection per scrape, timed from connect to last byte, body left
  compressed; `plain` sends no Accept-Encoding, `gzip` sends `Accept-Encoding: gzip`. Up to
  {scrapes} samples per encoding, taken only while no poll round runs (a sample during which
  the simulator got a request is dropped). p99 of that many samples is close to the maximum.
  *First scrape after a round*: every project changed in the round (at least its last-success
  time), so whatever the exporter caches between scrapes is rebuilt for this one: what a
  Prometheus scraping once per poll interval gets every time. The other samples repeat a
  scrape with nothing changed.
- **Baseline**: `bench/baseline_exporter.py`, the usual hand-written exporter: the same
  polling and the same metric families (step details as for ours), answers kept as dicts, a
  prometheus-client custom collector building one `GaugeMetricFamily` (`CounterMetricFamily`)
  per metric with every series on every scrape, served by
  `prometheus_client.start_http_server` (threaded, gzip when asked). It polls once and then
  only serves, so its scrapes are measured alone too.
- **RSS**: `VmRSS` of `/proc/PID/status`, after the poll and scrape measurements (warm-up).
"""


def _other_load(results: list[Row]) -> str:
    loads = ", ".join(
        f"{_f(r['other_load_cores'], 2)} at {int(r['projects']):,} projects" for r in results
    )
    busy = max(r["other_load_cores"] for r in results) > 0.1
    note = " **The machine was busy: the figures are disturbed.**" if busy else ""
    return f"CPU used meanwhile by other processes, in cores: {loads}.{note}\n"


def _code(info: dict[str, Any], digests: list[str]) -> str:
    if len(set(digests)) <= 1:
        return f"oms-exporter {info['oms_exporter']} (git {info['git']}, source {digests[0]})"
    return (
        f"oms-exporter {info['oms_exporter']} (git {info['git']} at the end; **the source "
        f"changed during the run**, per scenario: {', '.join(digests)})"
    )


def _steps_text(on: bool) -> str:
    if on:
        return (
            "on (`--step-details`: `DescribeProjectSteps` besides `DescribeProjectProgress`"
            " for every project not finished, and about 40 more series a project)"
        )
    return (
        "off (`OMS_EXPORTER_STEP_DETAILS=false`): the targets are stated for the first"
        " issue's metrics contract, about 25 series a project; `--step-details` measures"
        " them too"
    )


def render(results: list[Row], *, options: dict[str, Any], command: str, digests: list[str]) -> str:
    info = machine()
    target_rows = [
        [name, measured, "met" if ok else "**not met**"] for name, measured, ok in targets(results)
    ]
    return "\n".join(
        [
            "# oms-exporter benchmark\n",
            f"Written by `{command}` (`make bench` runs it with no arguments) on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n",
            f"**Machine**: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB RAM, "
            f"Linux {info['kernel']}. **Versions**: Python {info['python']}, aiohttp "
            f"{info['aiohttp']}, prometheus-client {info['prometheus_client']}, "
            f"{_code(info, digests)}.\n",
            _other_load(results),
            "## Targets\n",
            _table(["target", "measured", ""], target_rows),
            "## Poll rounds: oms-exporter against the bare-loop limit\n",
            poll_table(results),
            "## /metrics latency (ms): oms-exporter against the generic baseline\n",
            scrape_table(results),
            "## Memory\n",
            memory_table(results),
            _memory_watch(results, options),
            "## How it is measured\n",
            METHOD.format(**options, steps=_steps_text(bool(options.get("step_details")))),
        ]
    )


def summary(results: list[Row]) -> str:
    """The few figures worth seeing in a terminal."""
    lines = []
    for r in results:
        lines.append(
            f"{int(r['projects']):>6} projects: poll CPU {_f(r['ours_poll_cpu_ms_per_1000'], 0)}"
            f" ms/1000 (limit {_f(r['limit_cpu_ms_per_1000'], 0)}, "
            f"{_f(r['cpu_ours_over_limit'], 2)}x); /metrics p50 plain "
            f"{_f(r['ours_plain_p50_ms'])} ms (baseline {_f(r['baseline_plain_p50_ms'])}), "
            f"gzip {_f(r['ours_gzip_p50_ms'])} ms (baseline {_f(r['baseline_gzip_p50_ms'])}); "
            f"RSS {_f(r['ours_rss_mb'])} MB"
        )
    lines += [f"{'met' if ok else 'NOT MET'}: {name}: {m}" for name, m, ok in targets(results)]
    return "\n".join(lines)
