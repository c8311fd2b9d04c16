"""The three measurements: poll CPU per project, /metrics latency, memory over time.

Each one only looks at the exporter from outside (``/proc``, HTTP) and at the simulator's
request counter, which shows when a poll round runs without asking the exporter anything.
"""

from __future__ import annotations

import gzip
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import BenchError, Oms, count_samples, cpu_seconds, fetch, metric, rss_bytes

MB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile; with under 100 samples p99 is close to the maximum."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def measure_poll(
    pid: int, oms: Oms, *, projects: int, rounds: int, interval_seconds: float
) -> tuple[dict[str, float], dict[str, int]]:
    """CPU of the median of `rounds` steady-state poll rounds, each from quiet to quiet.

    Also return the requests of one round per Action: the bare loop sends the same mix.
    """
    round_timeout = 2 * interval_seconds + projects / 100 + 30.0
    total = oms.wait_quiet(timeout_seconds=round_timeout)
    marks = [cpu_seconds(pid)]
    before = oms.actions()
    started = time.monotonic()
    for _ in range(rounds):
        total = oms.wait_round(after_total=total, timeout_seconds=round_timeout)
        marks.append(cpu_seconds(pid))  # quiet again: the round and its bookkeeping are done
    window = time.monotonic() - started
    after = oms.actions()
    sent = {action: count - before.get(action, 0) for action, count in after.items()}
    sent = {action: count for action, count in sent.items() if count > 0}
    requests = sum(sent.values())
    if requests <= 0:
        raise BenchError("the exporter sent no requests while it was measured")
    # The median round: one round disturbed by the machine does not move the figure.
    cpu = statistics.median(b - a for a, b in itertools.pairwise(marks))
    figures = {
        "poll_requests": float(requests),
        "poll_requests_per_project": requests / (projects * rounds),
        "poll_window_seconds": window,
        "poll_cpu_ms_per_1000": cpu / projects * 1e6,
        "poll_cpu_ms_per_1000_requests": cpu / (requests / rounds) * 1e6,
    }
    return figures, {action: round(count / rounds) for action, count in sent.items()}


@dataclass
class _Samples:
    plain: list[float]
    gzipped: list[float]
    cold: list[float]
    plain_body: bytes = b""
    gzip_body: bytes = b""


def _scrape(url: str, *, gzipped: bool, timeout_seconds: float) -> tuple[float, bytes]:
    answer = fetch(url, gzip=gzipped, timeout_seconds=timeout_seconds)
    if answer.status != 200:
        raise BenchError(f"{url} answered HTTP {answer.status}")
    if gzipped and answer.encoding != "gzip":
        raise BenchError(f"{url} ignored Accept-Encoding: gzip")
    return answer.seconds, answer.body


def measure_scrapes(
    url: str,
    oms: Oms,
    *,
    projects: int,
    samples: int,
    cold_rounds: int,
    budget_seconds: float,
    interval_seconds: float,
) -> dict[str, float]:
    """Time /metrics, plain and gzip, only while no poll round runs.

    A sample during which OMS was asked anything is thrown away: it would measure the
    poller too. `cold_rounds` times, the first scrape after a round is kept apart: every
    project changed in that round, so that scrape renders them all again, as a Prometheus
    scraping once per poll interval always does.
    """
    got = _Samples([], [], [])
    deadline = time.monotonic() + budget_seconds
    timeout = max(budget_seconds, 30.0)
    round_timeout = 2 * interval_seconds + projects / 100 + 30.0
    total = oms.wait_quiet(timeout_seconds=round_timeout)
    after_round = False  # the last scrape (the poll measurement's) saw the last round
    while time.monotonic() < deadline:
        if after_round:
            seconds, _ = _scrape(url, gzipped=False, timeout_seconds=timeout)
            if oms.total() == total:
                got.cold.append(seconds)
        while time.monotonic() < deadline and (
            len(got.plain) < samples or len(got.gzipped) < samples
        ):
            plain, plain_body = _scrape(url, gzipped=False, timeout_seconds=timeout)
            zipped, gzip_body = _scrape(url, gzipped=True, timeout_seconds=timeout)
            if oms.total() != total:
                break  # a round started: these two measured it too
            got.plain.append(plain)
            got.gzipped.append(zipped)
            got.plain_body, got.gzip_body = plain_body, gzip_body
        done = len(got.plain) >= samples and len(got.gzipped) >= samples
        if done and len(got.cold) >= cold_rounds:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        total = oms.wait_round(after_total=total, timeout_seconds=round_timeout)
        after_round = True
    if not got.plain or not got.gzipped:
        raise BenchError(f"no scrape of {url} fitted between poll rounds")
    if cold_rounds and not got.cold:
        raise BenchError(f"no poll round of {url} ended within {budget_seconds:g} s")
    return _scrape_figures(got)


def _scrape_figures(got: _Samples) -> dict[str, float]:
    text = got.plain_body.decode()
    if gzip.decompress(got.gzip_body) == b"":
        raise BenchError("empty gzip body")
    ms = [1000 * s for s in got.plain]
    gz = [1000 * s for s in got.gzipped]
    cold = [1000 * s for s in got.cold]
    figures = {
        "scrape_samples": float(len(ms)),
        "plain_p50_ms": percentile(ms, 50),
        "plain_p99_ms": percentile(ms, 99),
        "gzip_p50_ms": percentile(gz, 50),
        "gzip_p99_ms": percentile(gz, 99),
        "series": float(count_samples(text)),
        "plain_kb": len(got.plain_body) / 1024,
        "gzip_kb": len(got.gzip_body) / 1024,
    }
    if cold:
        figures["cold_samples"] = float(len(cold))
        figures["cold_p50_ms"] = percentile(cold, 50)
        figures["cold_max_ms"] = max(cold)
    return figures


def watch_memory(
    pid: int,
    url: str,
    *,
    minutes: float,
    scrape_every_seconds: float,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Keep polling for `minutes`, scraped with gzip as Prometheus does; sample RSS each time.

    The first third of the window (at most a minute) is warm-up: the first scrapes after a
    round, compressed, reach the peak the earlier measurements did not; growth and trend are
    counted from its end.
    """
    started = time.monotonic()
    end = started + minutes * 60
    warm_up = min(60.0, minutes * 20)
    rounds_before = _rounds(url)
    points: list[tuple[float, float]] = [(0.0, rss_bytes(pid) / MB)]
    next_report = started + 60
    while (now := time.monotonic()) < end:
        time.sleep(min(scrape_every_seconds, end - now))
        _scrape(url, gzipped=True, timeout_seconds=60)
        points.append((time.monotonic() - started, rss_bytes(pid) / MB))
        if time.monotonic() >= next_report:
            log(f"  RSS {points[-1][1]:.1f} MB after {points[-1][0] / 60:.1f} min")
            next_report += 60
    warm = [point for point in points if point[0] >= warm_up] or points[-1:]
    return {
        "rss_watch_minutes": (time.monotonic() - started) / 60,
        "rss_watch_rounds": _rounds(url) - rounds_before,
        "rss_watch_start_mb": points[0][1],
        "rss_watch_warm_mb": warm[0][1],
        "rss_watch_end_mb": points[-1][1],
        "rss_watch_max_mb": max(mb for _, mb in points),
        "rss_watch_slope_mb_per_min": _slope(warm) * 60 if len(warm) > 2 else 0.0,
    }


def _rounds(url: str) -> float:
    return metric(fetch(url, timeout_seconds=60).body.decode(), "oms_exporter_poll_rounds_total")


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MB per second."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den if den else 0.0
