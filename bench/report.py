"""Turn the figures into bench/RESULTS.md: machine, versions, command, tables, targets."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from harness import REPO
from measure import Example

from oms_exporter.settings import Settings

Row = dict[str, float]


@dataclass(frozen=True)
class Config:
    """A configuration of the exporter measured: a name for the command line, a title for
    the report, and the settings it adds to every run's (nothing: the defaults)."""

    name: str
    title: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def step_details(self) -> bool:
        """Whether the exporter polls step details: this configuration's setting, else its
        default, read from its settings so that the baseline does as it does."""
        value = self.env.get("OMS_EXPORTER_STEP_DETAILS")
        if value is None:
            return bool(Settings.model_fields["step_details"].default)
        return value.strip().lower() in ("1", "true", "yes", "on")


CONFIGS: dict[str, Config] = {
    config.name: config
    for config in (
        Config("default", "default settings"),
        Config("steps-off", "step details off", {"OMS_EXPORTER_STEP_DETAILS": "false"}),
    )
}
# The exporter asks steps of a project in steady sync, and the progress of a settled one,
# every Nth round: any N consecutive rounds hold each of those once, fewer may hold none.
STEADY_PERIOD = math.lcm(
    *(
        int(Settings.model_fields[name].default)
        for name in ("steady_steps_every_rounds", "settled_poll_every_rounds")
    )
)


@dataclass(frozen=True)
class Result:
    """One configuration at one project count: the figures and what they were made of."""

    config: str
    figures: Row
    first_round_requests: dict[str, int]  # per Action, the exporter's first round
    window_requests: dict[str, int]  # per Action, the steady-state rounds measured
    examples: dict[str, Example]  # "migration", "sync": a steady project's samples


def as_json(results: list[Result], *, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": machine(),
        "configs": {name: asdict(config) for name, config in CONFIGS.items()},
        "results": [asdict(result) for result in results],
    }


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


def _x(value: float | None) -> str:
    return f"{_f(value, 2)}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _title(result: Result) -> str:
    return CONFIGS[result.config].title


def _count(result: Result) -> str:
    return f"{int(result.figures['projects']):,}"


def _per_action(requests: dict[str, int], divisor: float) -> str:
    """`Action 1.00 (requests)` per Action, most asked first."""
    ranked = sorted(requests.items(), key=lambda item: -item[1])
    return ", ".join(f"`{action}` {_f(count / divisor, 2)} ({count:,})" for action, count in ranked)


def requests_table(results: list[Result]) -> str:
    header = [
        "configuration",
        "projects",
        "first round: requests / project",
        "first round, per Action",
        "steady-state rounds measured",
        "**requests / project poll**",
        "per project poll, per Action",
    ]
    rows = []
    for result in results:
        r = result.figures
        polls = r["projects"] * r["ours_poll_rounds"]
        rows.append(
            [
                _title(result),
                _count(result),
                _f(r["ours_first_round_requests_per_project"], 2),
                _per_action(result.first_round_requests, r["projects"]),
                f"{int(r['ours_poll_rounds'])}",
                _f(r["ours_poll_requests_per_project"], 3),
                _per_action(result.window_requests, polls),
            ]
        )
    return _table(header, rows)


def first_round_table(results: list[Result]) -> str:
    header = [
        "configuration",
        "projects",
        "projects visible",
        "requests / project",
        "**ours from start until all visible (s)**",
        "ours until /readyz (s)",
        "**bare loop from start (s)**",
        "**ours / bare loop**",
        "round alone (s), ours / bare loop",
        "ours / bare loop, round alone",
        "bare loop, 3 requests / project (s)",
        "**ours / that loop**",
    ]
    rows = [
        [
            _title(result),
            _count(result),
            f"{int(r['ours_first_round_projects_visible']):,}",
            _f(r["ours_first_round_requests_per_project"], 2),
            _f(r["ours_first_round_s"], 2),
            _f(r["ours_first_round_ready_s"], 2),
            _f(r["limit_first_round_s"], 2),
            _x(r["first_round_ours_over_limit"]),
            _pair(r, "ours_first_round_alone_s", "limit_first_round_alone_s", 2),
            _x(r["first_round_alone_ours_over_limit"]),
            _f(r["limit3_first_round_s"], 2),
            _x(r["first_round_ours_over_limit3"]),
        ]
        for result in results
        for r in [result.figures]
    ]
    return _table(header, rows)


def poll_table(results: list[Result]) -> str:
    header = [
        "configuration",
        "projects",
        "interval (s)",
        "rounds",
        "requests / project poll",
        "last round wall (s)",
        "wall ms / 1,000 projects",
        "limit wall ms / 1,000 projects",
        "**CPU ms / 1,000 projects**",
        "**limit CPU ms / 1,000 projects**",
        "CPU ms / 1,000 requests, ours / limit",
        "**ours / limit**",
    ]
    rows = [
        [
            _title(result),
            _count(result),
            f"{r['interval_s']:g}",
            f"{int(r['ours_poll_rounds'])}",
            _f(r["ours_poll_requests_per_project"], 3),
            _f(r["ours_round_wall_s"], 2),
            _f(r["ours_round_wall_ms_per_1000"], 0),
            _f(r["limit_wall_ms_per_1000"], 0),
            _f(r["ours_poll_cpu_ms_per_1000"], 0),
            _f(r["limit_cpu_ms_per_1000"], 0),
            _pair(r, "ours_poll_cpu_ms_per_1000_requests", "limit_cpu_ms_per_1000_requests", 0),
            _x(r["cpu_ours_over_limit"]),
        ]
        for result in results
        for r in [result.figures]
    ]
    return _table(header, rows)


def scrape_table(results: list[Result]) -> str:
    header = [
        "configuration",
        "projects",
        "steps / project",
        "**samples / project**",
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
            _title(result),
            _count(result),
            _steps(r),
            _f(r["ours_samples_per_project"]),
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
        for result in results
        for r in [result.figures]
    ]
    return _table(header, rows)


def _steps(r: Row) -> str:
    """Steps per project seen on /metrics: the mean, and the range if they differ."""
    if not r["ours_projects_with_steps"]:
        return "none"
    if r["ours_steps_min"] == r["ours_steps_max"]:
        return f"{r['ours_steps_min']:g}"
    return f"{_f(r['ours_steps_per_project'])} ({r['ours_steps_min']:g} to {r['ours_steps_max']:g})"


def memory_table(results: list[Result]) -> str:
    header = [
        "configuration",
        "projects",
        "ours RSS after warm-up (MB)",
        "baseline RSS after warm-up (MB)",
    ]
    rows = [
        [_title(result), _count(result), _f(r["ours_rss_mb"]), _f(r["baseline_rss_mb"])]
        for result in results
        for r in [result.figures]
    ]
    return _table(header, rows)


def families_table(results: list[Result]) -> str:
    """Samples of a steady migration and a steady sync project, by metric, at the largest
    count of each configuration: where a project's budget of samples goes."""
    columns: list[tuple[str, Example]] = []
    for result in _largest(results).values():
        for kind in ("migration", "sync"):
            example = result.examples.get(kind)
            if example is not None:
                columns.append((f"{_title(result)}: {kind} `{example.project_id}`", example))
    if not columns:
        return "No steady migration or sync project was on /metrics.\n"
    names = sorted({name for _, example in columns for name in example.series})
    rows = [
        [f"`{name}`", *(str(example.series.get(name, 0)) for _, example in columns)]
        for name in names
    ]
    rows.append(["**all**", *(f"**{sum(ex.series.values())}**" for _, ex in columns)])
    return _table(["metric", *(title for title, _ in columns)], rows)


def _largest(results: list[Result]) -> dict[str, Result]:
    """Per configuration, in run order, its result at 10,000 projects, else its largest."""
    chosen: dict[str, Result] = {}
    for result in results:
        best = chosen.get(result.config)
        if best is None or _rank(result) > _rank(best):
            chosen[result.config] = result
    return chosen


def _rank(result: Result) -> tuple[bool, float]:
    return result.figures["projects"] == 10_000, result.figures["projects"]


@dataclass(frozen=True)
class Target:
    """One goal of the issue: the figure, the goal as the issue states it, how to read it."""

    figure: str
    goal: str
    measured: Callable[[Row], str]
    met: Callable[[Row], bool]


def _requests_measured(r: Row) -> str:
    rounds = int(r["ours_poll_rounds"])
    short = (
        f"; **only {rounds} rounds, fewer than {STEADY_PERIOD}**" if rounds < STEADY_PERIOD else ""
    )
    return f"{_f(r['ours_poll_requests_per_project'], 3)} over {rounds} rounds{short}"


def _first_round_measured(r: Row) -> str:
    visible = int(r["ours_first_round_projects_visible"])
    missing = "" if visible == r["projects"] else f"; **only {visible:,} projects visible**"
    return (
        f"{_x(r['first_round_ours_over_limit'])}: {_f(r['ours_first_round_s'], 2)} s against "
        f"{_f(r['limit_first_round_s'], 2)} s, "
        f"{_f(r['ours_first_round_requests_per_project'], 2)} requests / project{missing}"
    )


def _first_round_met(ratio: str) -> Callable[[Row], bool]:
    """Met against the loop whose ratio is ``ratio``: within 1.3x, with fewer than 3
    requests per project, every project visible."""

    def met(r: Row) -> bool:
        return (
            r[ratio] <= 1.3
            and r["ours_first_round_requests_per_project"] < 3
            and r["ours_first_round_projects_visible"] == r["projects"]
        )

    return met


def _first_round3_measured(r: Row) -> str:
    return (
        f"{_x(r['first_round_ours_over_limit3'])}: {_f(r['ours_first_round_s'], 2)} s against "
        f"{_f(r['limit3_first_round_s'], 2)} s for "
        f"{_f(r['limit3_first_round_requests'] / r['projects'], 2)} requests / project"
    )


def _with_steps(text: str, r: Row) -> str:
    """Say so when step details are on and not every project had the goal's 10 steps."""
    every = r["ours_projects_with_steps"] == r["projects"]
    if not r["step_details"] or (every and r["ours_steps_min"] == r["ours_steps_max"] == 10):
        return text
    with_steps = f"{int(r['ours_projects_with_steps']):,} projects with steps"
    return f"{text} (**steps per project: {_steps(r)}, {with_steps}**)"


def _rss(r: Row) -> float:
    """The largest RSS seen: after the latency scrapes, and over the whole watch."""
    return max(r["ours_rss_mb"], r.get("ours_rss_watch_max_mb", 0.0))


def _rss_measured(r: Row) -> str:
    if "ours_rss_watch_max_mb" in r:
        return (
            f"max {_f(_rss(r))} MB: {_f(r['ours_rss_mb'])} MB after the latency scrapes, "
            f"max {_f(r['ours_rss_watch_max_mb'])} MB scraped with gzip over "
            f"{_f(r['ours_rss_watch_minutes'])} min"
        )
    return f"{_f(r['ours_rss_mb'])} MB after the latency scrapes (not watched over time)"


TARGETS = (
    Target(
        "OMS requests per project poll, steady state",
        "<= 1.2",
        _requests_measured,
        lambda r: r["ours_poll_requests_per_project"] <= 1.2,
    ),
    Target(
        "first round until every project is visible",
        "<= 1.3x a bare aiohttp loop sending the same requests, "
        "with fewer requests than 3 per project",
        _first_round_measured,
        _first_round_met("first_round_ours_over_limit"),
    ),
    Target(
        "the same, against the issue's loop",
        "<= 1.3x a bare aiohttp loop sending the same ListProjects pages and 3 requests per "
        "project (progress, steps, DescribeProject: what the exporter sent before), "
        "with fewer requests",
        _first_round3_measured,
        _first_round_met("first_round_ours_over_limit3"),
    ),
    Target(
        "samples per project on /metrics",
        "<= 45 with 10 steps",
        lambda r: _with_steps(_f(r["ours_samples_per_project"]), r),
        lambda r: r["ours_samples_per_project"] <= 45,
    ),
    Target(
        "/metrics p50, plain",
        "<= 80 ms with 10 steps",
        lambda r: _with_steps(f"{_f(r['ours_plain_p50_ms'])} ms", r),
        lambda r: r["ours_plain_p50_ms"] <= 80,
    ),
    Target(
        "/metrics p50, gzip",
        "<= 180 ms with 10 steps",
        lambda r: _with_steps(f"{_f(r['ours_gzip_p50_ms'])} ms", r),
        lambda r: r["ours_gzip_p50_ms"] <= 180,
    ),
    Target("RSS", "<= 130 MB", _rss_measured, lambda r: _rss(r) <= 130),
    Target(
        "exporter CPU per project poll vs a bare aiohttp loop",
        "<= 1.3x",
        lambda r: (
            f"{_x(r['cpu_ours_over_limit'])} ({_f(r['ours_poll_cpu_ms_per_1000'], 0)} "
            f"against {_f(r['limit_cpu_ms_per_1000'], 0)} ms / 1,000 projects)"
        ),
        lambda r: r["cpu_ours_over_limit"] <= 1.3,
    ),
)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets_table(results: list[Result]) -> str:
    """The issue's goals, judged on the first configuration at its largest count; the
    other configurations' figures beside, for comparison."""
    chosen = list(_largest(results).values())
    head, others = chosen[0], chosen[1:]
    header = ["figure", "goal", f"**{_title(head)}**, {_count(head)} projects"]
    header += [f"{_title(other)}, {_count(other)} projects" for other in others]
    header.append(f"{_title(head)}: met?")
    rows = [
        [
            target.figure,
            target.goal,
            target.measured(head.figures),
            *(f"{target.measured(o.figures)} ({_verdict(target.met(o.figures))})" for o in others),
            _verdict(target.met(head.figures)),
        ]
        for target in TARGETS
    ]
    return _table(header, rows)


def targets(results: list[Result]) -> list[tuple[str, str, bool]]:
    """(figure and goal, what was measured, met) on the first configuration's largest count."""
    head = next(iter(_largest(results).values())).figures
    return [
        (f"{target.figure} {target.goal}", target.measured(head), target.met(head))
        for target in TARGETS
    ]


def _memory_watch(results: list[Result]) -> str:
    watched = [result for result in results if "ours_rss_watch_max_mb" in result.figures]
    if not watched:
        return "RSS over time was not watched (`--rss-minutes 0`).\n"
    result = watched[0]
    r = result.figures
    return (
        f"RSS over time, {_title(result)}, at {_count(result)} projects: polled every "
        f"{r['interval_s']:g} s for {_f(r['ours_rss_watch_minutes'])} minutes "
        f"({int(r['ours_rss_watch_rounds'])} rounds; a bounded run, not hours), scraped with gzip "
        f"every {r['interval_s']:g} s: {_f(r['ours_rss_watch_start_mb'])} MB at the start, "
        f"{_f(r['ours_rss_watch_warm_mb'])} MB after the warm-up (the first third, at most a "
        f"minute), {_f(r['ours_rss_watch_end_mb'])} MB at the end (end - after warm-up "
        f"{_f(r['ours_rss_watch_end_mb'] - r['ours_rss_watch_warm_mb'])} MB), max "
        f"{_f(r['ours_rss_watch_max_mb'])} MB; least-squares trend after the warm-up "
        f"{_f(r['ours_rss_watch_slope_mb_per_min'], 2)} MB/min.\n"
    )


def configurations(results: list[Result]) -> str:
    """What each configuration set, and what the exporter was seen doing in it."""
    lines = []
    for name, counts in _counts(results).items():
        config = CONFIGS[name]
        env = ", ".join(f"`{key}={value}`" for key, value in config.env.items())
        mine = [result for result in results if result.config == name]
        steps = "; ".join(
            f"{_count(r)} projects: step details "
            f"{'on' if r.figures['step_details'] else 'off'}, steps per project on /metrics: "
            f"{_steps(r.figures)}"
            for r in mine
        )
        lines.append(
            f"- **{config.title}** (`--configs {name}`): "
            f"{env or 'nothing set beyond the common settings'}; measured at {counts}. {steps}."
        )
    return "\n".join(lines) + "\n"


def _counts(results: list[Result]) -> dict[str, str]:
    counts: dict[str, list[str]] = {}
    for result in results:
        counts.setdefault(result.config, []).append(_count(result))
    return {name: ", ".join(values) + " projects" for name, values in counts.items()}


METHOD = """\
- Everything runs on 127.0.0.1 of this one machine: the simulator (`oms-exporter simulate
  --scenario bulk --api v4`, a fresh one for each configuration and count), the program
  measured and the benchmark's client share its cores.
- **Configurations**: oms-exporter is given the simulator's address and credentials,
  `api: v4`, the listen address, the poll interval (tables) and concurrency {concurrency}
  (its default is {default_concurrency}); *default settings* sets nothing else, *step
  details off* adds
  `OMS_EXPORTER_STEP_DETAILS=false` (the default is read from the exporter's settings: step
  details {default_steps}). The first configuration of `--configs` is measured at every
  project count, the others at the largest only.
- **First round**: wall time from just before the exporter's process is started until
  every project is visible: the end of the first gzip scrape of /metrics (as Prometheus
  asks) after `/readyz` answers 200 (asked every 50 ms, once its first poll round is done)
  that shows them all; *projects visible* counts its `oms_project_up` samples, and *until
  /readyz* is the time without that scrape. Its
  requests are the simulator's counters per Action (`/_sim/requests`), read in the quiet
  after that round (the run stops if the second round had begun). *Round alone* is the
  exporter's own `oms_exporter_last_poll_round_duration_seconds` after it.
  The **bare loop** (`bench/bare_loop.py`, started after the exporter was measured and
  stopped, against the same simulator) sends the same number of requests per Action, with
  the bodies the exporter's code sends (`ListProjects` pages of the size it used, a
  verification result's first page, else `{{"id": ...}}`), each Action to the first
  projects in order, on a fresh aiohttp session, from just before its process is started
  until the last answer of that round; *round alone* from the session's creation. Then
  the issue's loop, the same way: the same `ListProjects` pages, then
  `DescribeProjectProgress`, `DescribeProjectSteps` and `DescribeProject` for every
  project, what the exporter sent in a first round before issue 15 (whose goal is "1.3x
  that bare loop, with fewer requests"; both readings are reported).
- **Steady-state poll rounds**: after the first round, {rounds} consecutive rounds, from a
  quiet moment to a quiet moment on the simulator's request counter
  (`/_sim/requests/total`), counted by the exporter's `oms_exporter_poll_rounds_total`
  read before and after. The exporter asks `DescribeProjectSteps` of a project in steady
  incremental sync, and the progress of a FINISHED/RELEASED/DELETED one, every
  {period}th round, so any {period} consecutive rounds hold each of those once; fewer
  are no steady-state average. *Requests per project poll* is the simulator's requests
  in the window / (projects x rounds), also per Action. Poll CPU is the exporter's
  `/proc/PID/task/*/schedstat` (ns) over the window / rounds: a mean, not a median round,
  since every {period}th round asks more. Round wall time is the exporter's own gauge after
  the window's last round.
- **Limit**: after its first round, the bare loop sends in {rounds} rounds what the
  exporter sent in the window (each Action's total spread evenly over them), `POST
  /api/v2?Action=...` with those bodies and Basic auth, from one aiohttp session (connector
  limit = concurrency = {concurrency}), reads each body and drops it; its own CPU time
  (`time.process_time`) over those rounds / rounds. Both per 1,000 projects per round.
- **Samples per project**: samples on /metrics (after the window) with a `project_id`
  label / projects. Steps per project: a project's `oms_project_step_status` samples (one
  per step), among projects that have any. The two projects by metric are the first (by
  id) RUNNING migration and sync projects with an incremental lag sample.
- **/metrics**: fresh connection per scrape, timed from connect to last byte, body left
  compressed; `plain` sends no Accept-Encoding, `gzip` sends `Accept-Encoding: gzip`. Up to
  {scrapes} samples per encoding, taken only while no poll round runs (a sample during which
  the simulator got a request is dropped). p99 of that many samples is close to the maximum.
  *First scrape after a round* (up to {cold_scrapes}, one per round): every project changed
  in the round (at least its last-success time), so whatever the exporter caches between
  scrapes is rebuilt for this one: what a Prometheus scraping once per poll interval gets
  every time. The other samples repeat a scrape with nothing changed.
- **Baseline**: `bench/baseline_exporter.py`, the usual hand-written exporter: the same
  polling and the same metric families (step details as the exporter had them), answers
  kept as dicts, a prometheus-client custom collector building one `GaugeMetricFamily`
  (`CounterMetricFamily`) per metric with every series on every scrape, served by
  `prometheus_client.start_http_server` (threaded, gzip when asked). It polls once and then
  only serves, so its scrapes are measured alone too.
- **RSS**: `VmRSS` of `/proc/PID/status`, after the poll and scrape measurements (warm-up);
  over time (`--rss-minutes`) for the first configuration at the largest count only.
  *RSS* in the targets is the maximum over that watch where there was one.
"""


def _other_load(results: list[Result]) -> str:
    loads = ", ".join(
        f"{_f(r.figures['other_load_cores'], 2)} ({_title(r)}, {_count(r)} projects)"
        for r in results
    )
    busy = max(r.figures["other_load_cores"] for r in results) > 0.1
    note = " **The machine was busy: the figures are disturbed.**" if busy else ""
    return f"CPU used meanwhile by other processes, in cores: {loads}.{note}\n"


def _code(info: dict[str, Any], digests: list[str]) -> str:
    if len(set(digests)) <= 1:
        return f"oms-exporter {info['oms_exporter']} (git {info['git']}, source {digests[0]})"
    return (
        f"oms-exporter {info['oms_exporter']} (git {info['git']} at the end; **the source "
        f"changed during the run**, per scenario: {', '.join(digests)})"
    )


def render(
    results: list[Result], *, options: dict[str, Any], command: str, digests: list[str]
) -> str:
    info = machine()
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
            "## Configurations\n",
            configurations(results),
            "## Targets\n",
            targets_table(results),
            "## Requests to OMS\n",
            requests_table(results),
            "## First round: oms-exporter against a bare loop sending the same requests\n",
            first_round_table(results),
            "## Poll rounds: oms-exporter against the bare-loop limit\n",
            poll_table(results),
            "## /metrics latency (ms): oms-exporter against the generic baseline\n",
            scrape_table(results),
            "## Samples per project by metric\n",
            families_table(results),
            "## Memory\n",
            memory_table(results),
            _memory_watch(results),
            "## How it is measured\n",
            METHOD.format(
                **options,
                period=STEADY_PERIOD,
                default_concurrency=Settings.model_fields["max_concurrency"].default,
                default_steps="on" if CONFIGS["default"].step_details else "off",
            ),
        ]
    )


def summary(results: list[Result]) -> str:
    """The few figures worth seeing in a terminal."""
    lines = []
    for result in results:
        r = result.figures
        lines.append(
            f"{int(r['projects']):>6} projects, {_title(result)}: "
            f"{_f(r['ours_poll_requests_per_project'], 3)} requests / project poll; "
            f"first round {_f(r['ours_first_round_s'], 2)} s "
            f"({_x(r['first_round_ours_over_limit'])} the bare loop); poll CPU "
            f"{_f(r['ours_poll_cpu_ms_per_1000'], 0)} ms/1000 ({_x(r['cpu_ours_over_limit'])}); "
            f"{_f(r['ours_samples_per_project'])} samples / project; /metrics p50 plain "
            f"{_f(r['ours_plain_p50_ms'])} ms, gzip {_f(r['ours_gzip_p50_ms'])} ms; "
            f"RSS {_f(r['ours_rss_mb'])} MB"
        )
    lines += [f"{'met' if ok else 'NOT MET'}: {name}: {m}" for name, m, ok in targets(results)]
    return "\n".join(lines)
