"""The measurements: first round, poll cost per project, /metrics latency, memory over time.

Each one only looks at the exporter from outside (``/proc``, HTTP) and at the simulator's
request counter, which shows when a poll round runs without asking the exporter anything.
"""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import (
    BenchError,
    Oms,
    count_samples,
    cpu_seconds,
    fetch,
    label_values,
    metric,
    rss_bytes,
    series_by_project,
    wait_until,
)

MB = 1024 * 1024
LAG = "oms_project_incr_sync_lag_seconds"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile; with under 100 samples p99 is close to the maximum."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


@dataclass(frozen=True)
class FirstRound:
    """The exporter's first round: its figures and what it asked OMS, per Action."""

    figures: dict[str, float]
    requests: dict[str, int]


def measure_first_round(
    base: str, oms: Oms, *, projects: int, started_unix: float, interval_seconds: float
) -> FirstRound:
    """From the exporter's start (`started_unix`, just before it was started) until every
    configured project is visible: the end of the first gzip scrape (as Prometheus asks)
    after /readyz says the first round is done that shows them all. Rendering 10,000 new
    projects' lines is part of the round's cost: timed to /readyz alone, it was not. Then
    what that round asked OMS, read before the second round begins."""
    wait_until(
        lambda: fetch(base + "/readyz").status == 200,
        timeout_seconds=60 + projects / 50,
        what="the exporter's first poll round",
        every=0.05,  # often enough to time the round, seldom enough not to slow it
    )
    ready_unix = time.time()
    visible_unix, visible = _first_visible(base + "/metrics", projects)
    quiet = oms.wait_quiet(timeout_seconds=_round_timeout(projects, interval_seconds))
    total, requests = oms.counters()
    body = fetch(base + "/metrics").body.decode()
    if total != quiet or metric(body, "oms_exporter_poll_rounds_total") != 1:
        raise BenchError(
            f"the second poll round began before the first one's requests were counted "
            f"(the first took {ready_unix - started_unix:.1f} s from the start, the interval "
            f"is {interval_seconds:g} s): use a longer --interval"
        )
    sent = sum(requests.values())
    return FirstRound(
        figures={
            "first_round_s": visible_unix - started_unix,
            "first_round_ready_s": ready_unix - started_unix,
            "first_round_alone_s": metric(body, "oms_exporter_last_poll_round_duration_seconds"),
            "first_round_requests": float(sent),
            "first_round_requests_per_project": sent / projects,
            "first_round_projects_visible": float(visible),
        },
        requests=requests,
    )


def _first_visible(url: str, projects: int) -> tuple[float, int]:
    """Scrape with gzip until every project is on /metrics (or 30 s passed): when the last
    scrape ended, and how many projects it showed."""
    deadline = time.monotonic() + 30
    while True:
        got = fetch(url, gzip=True)
        ended_unix = time.time()
        body = gzip.decompress(got.body) if got.encoding == "gzip" else got.body
        visible = count_samples(body.decode(), name="oms_project_up")
        if visible >= projects or time.monotonic() > deadline:
            return ended_unix, visible


@dataclass(frozen=True)
class PollWindow:
    """Consecutive steady-state poll rounds: figures, requests per Action, /metrics after."""

    figures: dict[str, float]
    requests: dict[str, int]
    rounds: int
    body: str


def _round_timeout(projects: int, interval_seconds: float) -> float:
    return 2 * interval_seconds + projects / 100 + 30.0


def _rounds_done(metrics_url: str) -> tuple[int, str]:
    body = fetch(metrics_url).body.decode()
    return round(metric(body, "oms_exporter_poll_rounds_total")), body


@dataclass(frozen=True)
class _Start:
    total: int
    rounds: int
    requests: dict[str, int]
    cpu: float
    monotonic: float


def _quiet_start(pid: int, oms: Oms, metrics_url: str, *, timeout_seconds: float) -> _Start:
    """A quiet moment; the exporter's round count, the requests so far and its CPU in it.

    After the scrape that reads the round count, quiet again before the CPU is read, so
    that what the exporter does after a scrape is not counted as polling.
    """
    for _ in range(5):
        total = oms.wait_quiet(timeout_seconds=timeout_seconds)
        rounds, _ = _rounds_done(metrics_url)
        counted, requests = oms.counters()
        settled = oms.wait_quiet(timeout_seconds=timeout_seconds)
        start = _Start(total, rounds, requests, cpu_seconds(pid), time.monotonic())
        if total == counted == settled == oms.total():
            return start
    raise BenchError("no quiet moment long enough to read the round count: use a longer --interval")


def measure_poll(
    pid: int,
    oms: Oms,
    metrics_url: str,
    *,
    projects: int,
    rounds: int,
    interval_seconds: float,
) -> PollWindow:
    """CPU and requests of `rounds` consecutive poll rounds, from a quiet moment to one.

    Rounds differ in steady state: steps of a project in steady sync and settled projects
    are asked every Nth round (10 by default). So the figures are the window's totals
    divided by its rounds, as the exporter's own round counter counts them, not a median
    round, which would leave those requests out.
    """
    timeout = _round_timeout(projects, interval_seconds)
    start = _quiet_start(pid, oms, metrics_url, timeout_seconds=timeout)
    total = start.total
    for _ in range(rounds):
        total = oms.wait_round(after_total=total, timeout_seconds=timeout)
    cpu = cpu_seconds(pid) - start.cpu  # quiet again: the round and its bookkeeping are done
    window = time.monotonic() - start.monotonic
    after_total, after = oms.counters()
    rounds_after, body = _rounds_done(metrics_url)
    counted = rounds_after - start.rounds
    if after_total != total or counted < 1:
        raise BenchError("a poll round began as the window closed: use a longer --interval")
    sent = {action: count - start.requests.get(action, 0) for action, count in after.items()}
    sent = {action: count for action, count in sent.items() if count > 0}
    requests = sum(sent.values())
    if requests <= 0:
        raise BenchError("the exporter sent no requests while it was measured")
    figures = {
        "poll_rounds": float(counted),
        "poll_requests": float(requests),
        "poll_requests_per_project": requests / (projects * counted),
        "poll_window_seconds": window,
        "poll_cpu_ms_per_1000": cpu / counted / projects * 1e6,
        "poll_cpu_ms_per_1000_requests": cpu / requests * 1e6,
    }
    return PollWindow(figures, sent, counted, body)


@dataclass(frozen=True)
class Example:
    """One project's samples on /metrics, by metric name."""

    project_id: str
    series: dict[str, int]


def project_figures(body: str, *, projects: int) -> tuple[dict[str, float], dict[str, Example]]:
    """Samples per project and steps per project on /metrics, and two typical projects.

    The typical ones are the first steady migration and steady sync (RUNNING, with an
    incremental lag): what most of a large estate looks like.
    """
    per_project = series_by_project(body)
    samples = sum(sum(series.values()) for series in per_project.values())
    steps = [series["oms_project_step_status"] for series in per_project.values()]
    with_steps = [count for count in steps if count > 0]
    figures = {
        "project_samples": float(samples),
        "samples_per_project": samples / projects,
        "steps_per_project": statistics.fmean(with_steps) if with_steps else 0.0,
        "steps_min": float(min(with_steps, default=0)),
        "steps_max": float(max(with_steps, default=0)),
        "projects_with_steps": float(len(with_steps)),
    }
    kinds = label_values(body, "oms_project_info", "kind")
    statuses = label_values(body, "oms_project_status", "status")
    examples: dict[str, Example] = {}
    for project_id in sorted(per_project):
        series = per_project[project_id]
        kind = kinds.get(project_id, "")
        steady = statuses.get(project_id) == "RUNNING" and series[LAG] > 0
        if steady and kind in ("migration", "sync") and kind not in examples:
            examples[kind] = Example(project_id, dict(series))
    return figures, examples


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
    round_timeout = _round_timeout(projects, interval_seconds)
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
