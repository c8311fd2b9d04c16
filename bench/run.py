"""Benchmark oms-exporter against its simulator: requests, first round, poll cost, /metrics, memory.

For each configuration and project count, on 127.0.0.1: the simulator (bulk scenario, 4.x
API); oms-exporter (first round, steady-state requests and poll CPU, samples per project,
/metrics latency, RSS); a bare aiohttp loop sending the requests oms-exporter sent (the
limit); the naive prometheus-client baseline (/metrics latency, RSS). The first
configuration (the exporter's defaults) is measured at every count, the others (step details
off) at the largest. Figures go to a Markdown report (and, with --json, to a JSON file).

    .venv/bin/python bench/run.py                  # make bench: 100, 1,000 and 10,000
    .venv/bin/python bench/run.py --projects 50 --interval 3 --rounds 2 --scrapes 5 \\
        --cold-scrapes 2 --rss-minutes 0.05 --out /tmp/RESULTS.md --json /tmp/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Final

import report
from harness import (
    PASSWORD,
    PASSWORD_ENV,
    PYTHON,
    REPO,
    USERNAME,
    BenchError,
    Oms,
    OtherLoad,
    clean_env,
    code_digest,
    count_samples,
    metric,
    rss_bytes,
    simulator,
    started,
)
from measure import (
    MB,
    Example,
    measure_first_round,
    measure_poll,
    measure_scrapes,
    project_figures,
    watch_memory,
)
from report import CONFIGS, Result

from oms_exporter.oms.discovery import PAGE_SIZES, SORT
from oms_exporter.oms.v4 import VERIFY_ACTION, verification_body

LIST_ACTION = "ListProjects"

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Options:
    interval: float  # 0: chosen per project count, see poll_interval()
    rounds: int
    scrapes: int
    cold_scrapes: int
    scrape_seconds: float
    baseline_seconds: float
    rss_minutes: float
    concurrency: int


@dataclass
class Ours:
    """What measuring oms-exporter gave: figures, and its requests for the bare loop."""

    figures: dict[str, float] = field(default_factory=dict)
    first_round: dict[str, int] = field(default_factory=dict)
    window: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    examples: dict[str, Example] = field(default_factory=dict)

    def add(self, figures: dict[str, float]) -> None:
        self.figures.update({f"ours_{key}": value for key, value in figures.items()})


def poll_interval(projects: int) -> float:
    """2 s plus 2 s per 1,000 projects. The first round must end before the second starts,
    or its requests cannot be told apart: it took about 1.2 s per 1,000 projects here (12 s
    from the start at 10,000, step details on), so this leaves room for a slower machine,
    and steady rounds leave quiet time to scrape in."""
    return round(2.0 + projects * 0.002, 1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# What the exporter sent per project in its first round before issue 15: the issue's
# "now" loop, against which its goal is "1.3x that bare loop, with fewer requests".
THREE_PER_PROJECT: Final = ("DescribeProjectProgress", "DescribeProjectSteps", "DescribeProject")


def _plan(mix: dict[str, int]) -> str:
    return ",".join(f"{action}={count}" for action, count in mix.items())


def bare_loop(url: str, projects: int, options: Options, ours: Ours) -> dict[str, float]:
    """The limit: the exporter's first round, then its steady-state window's requests,
    from a loop that ignores the answers; its first round timed from its process's start."""
    result, started_unix = _run_bare_loop(
        url, projects, options, ours, first=ours.first_round, window=ours.window
    )
    return {
        "limit_first_round_s": result["first_round_end_unix"] - started_unix,
        "limit_first_round_alone_s": result["first_round_seconds"],
        "limit_first_round_requests": result["first_round_requests"],
        "limit_cpu_ms_per_1000": result["cpu_ms_per_1000_projects"],
        "limit_cpu_ms_per_1000_requests": result["cpu_ms_per_1000_requests"],
        "limit_wall_ms_per_1000": result["wall_ms_per_1000_projects"],
    }


def bare_loop_three(url: str, projects: int, options: Options, ours: Ours) -> dict[str, float]:
    """The issue's "now" loop: the exporter's ListProjects pages, then 3 requests per
    project; only its first round counts (one token steady round follows)."""
    first = {LIST_ACTION: ours.first_round.get(LIST_ACTION, 0)}
    first.update(dict.fromkeys(THREE_PER_PROJECT, projects))
    if not first[LIST_ACTION]:
        del first[LIST_ACTION]
    result, started_unix = _run_bare_loop(
        url, projects, options, replace(ours, rounds=1), first=first, window={LIST_ACTION: 0}
    )
    return {
        "limit3_first_round_s": result["first_round_end_unix"] - started_unix,
        "limit3_first_round_requests": result["first_round_requests"],
    }


def _run_bare_loop(
    url: str,
    projects: int,
    options: Options,
    ours: Ours,
    *,
    first: dict[str, int],
    window: dict[str, int],
) -> tuple[dict[str, float], float]:
    """Run bench/bare_loop.py; its JSON result and the Unix time just before its start."""
    bodies = request_bodies(projects, pages=first.get(LIST_ACTION, 0))
    argv = [PYTHON, str(BENCH / "bare_loop.py"), "--url", url, "--username", USERNAME]
    argv += ["--projects", str(projects), "--rounds", str(ours.rounds)]
    argv += ["--first-mix", _plan(first), "--mix", _plan(window)]
    argv += ["--bodies", json.dumps(bodies)]
    argv += ["--concurrency", str(options.concurrency), "--password-env", PASSWORD_ENV]
    timeout = 60 + (sum(first.values()) + sum(window.values())) / 200
    started_unix = time.time()
    done = subprocess.run(  # run() kills the child if the timeout passes
        argv,
        env={**clean_env(), PASSWORD_ENV: PASSWORD},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise BenchError(f"bare loop failed ({done.returncode}): {done.stdout}{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, started_unix


def request_bodies(projects: int, *, pages: int) -> dict[str, dict[str, object]]:
    """The bodies the exporter sends the Actions not asked with ``{"id": ...}``, from its
    own code: ListProjects pages (of the largest size that lists `projects` in `pages`
    pages, which is what its paging chose) and a verification result's first page."""
    size = next(
        (size for size in PAGE_SIZES if pages and math.ceil(projects / size) <= pages),
        PAGE_SIZES[0],
    )
    return {
        LIST_ACTION: {**SORT, "pageNumber": "$page", "pageSize": size},
        VERIFY_ACTION: verification_body("$id", 1),
    }


def exporter_env(url: str, options: Options, config: str) -> dict[str, str]:
    """The exporter's settings: only what every run needs, then the configuration's own."""
    return {
        "OMS_EXPORTER_OMS_URL": url,
        "OMS_EXPORTER_OMS_USERNAME": USERNAME,
        "OMS_EXPORTER_OMS_PASSWORD": PASSWORD,
        "OMS_EXPORTER_API": "v4",
        "OMS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
        "OMS_EXPORTER_POLL_INTERVAL": f"{options.interval:g}",
        "OMS_EXPORTER_MAX_CONCURRENCY": str(options.concurrency),
        **CONFIGS[config].env,
    }


def ours(
    url: str,
    oms: Oms,
    projects: int,
    options: Options,
    *,
    config: str,
    workdir: Path,
    watch_rss: bool,
) -> Ours:
    """oms-exporter in `config`, configured from a YAML file listing every project."""
    path = workdir / "exporter.yaml"
    ids = "".join(f"  - p_sim_{index:06d}\n" for index in range(1, projects + 1))
    path.write_text("project_ids:\n" + ids)
    argv = [PYTHON, "-m", "oms_exporter", "--config", str(path)]
    env = exporter_env(url, options, config)
    got = Ours()
    started_unix = time.time()  # the first round is timed from here, as the bare loop's is
    with started(argv, env=env, ready=r"listening on (\S+?:\d+)", timeout_seconds=60) as exp:
        base = "http://" + exp.url
        first = measure_first_round(
            base,
            oms,
            projects=projects,
            started_unix=started_unix,
            interval_seconds=options.interval,
        )
        got.add(first.figures)
        got.first_round = first.requests
        log(f"  ours: first round done, measuring {options.rounds} poll rounds")
        steady_state(got, exp.pid, oms, base, projects=projects, options=options)
        log("  ours: scraping /metrics between poll rounds")
        serving(got, exp.pid, oms, base, projects=projects, options=options, watch_rss=watch_rss)
    return got


def steady_state(
    got: Ours, pid: int, oms: Oms, base: str, *, projects: int, options: Options
) -> None:
    """The steady-state window: requests and CPU, then what /metrics holds per project."""
    poll = measure_poll(
        pid,
        oms,
        base + "/metrics",
        projects=projects,
        rounds=options.rounds,
        interval_seconds=options.interval,
    )
    got.add(poll.figures)
    got.window, got.rounds = poll.requests, poll.rounds
    wall = metric(poll.body, "oms_exporter_last_poll_round_duration_seconds")
    up = count_samples(poll.body, name="oms_project_up", value=1.0)
    got.add({"round_wall_s": wall, "round_wall_ms_per_1000": wall / projects * 1e6})
    got.add({"projects_up": float(up)})
    samples, got.examples = project_figures(poll.body, projects=projects)
    got.add(samples)


def serving(
    got: Ours,
    pid: int,
    oms: Oms,
    base: str,
    *,
    projects: int,
    options: Options,
    watch_rss: bool,
) -> None:
    """/metrics latency between rounds, RSS, and with `watch_rss` RSS over time."""
    scrapes = measure_scrapes(
        base + "/metrics",
        oms,
        projects=projects,
        samples=options.scrapes,
        cold_rounds=options.cold_scrapes,
        budget_seconds=options.scrape_seconds,
        interval_seconds=options.interval,
    )
    got.add(scrapes)
    got.add({"rss_mb": rss_bytes(pid) / MB})
    if watch_rss:
        log(f"  ours: polling for {options.rss_minutes:g} min, watching RSS")
        memory = watch_memory(
            pid,
            base + "/metrics",
            minutes=options.rss_minutes,
            scrape_every_seconds=options.interval,
            log=log,
        )
        got.add(memory)


def baseline(
    url: str, oms: Oms, projects: int, options: Options, *, step_details: bool
) -> dict[str, float]:
    """The naive exporter: polls once (so its scrapes are measured alone), then serves."""
    argv = [PYTHON, str(BENCH / "baseline_exporter.py"), "--oms-url", url]
    argv += ["--username", USERNAME, "--password-env", PASSWORD_ENV, "--projects", str(projects)]
    argv += ["--interval", "86400", "--concurrency", str(options.concurrency)]
    argv.append("--step-details" if step_details else "--no-step-details")
    with started(argv, ready=r"listening on (http://\S+)", timeout_seconds=60) as naive:
        naive.wait_for_line(r"poll round 1 done", timeout_seconds=60 + projects / 50)
        log("  baseline: scraping /metrics")
        scrapes = measure_scrapes(
            naive.url + "/metrics",
            oms,
            projects=projects,
            samples=options.scrapes,
            cold_rounds=0,
            budget_seconds=options.baseline_seconds,
            interval_seconds=options.interval,
        )
        figures = {f"baseline_{key}": value for key, value in scrapes.items()}
        figures["baseline_rss_mb"] = rss_bytes(naive.pid) / MB
    return figures


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """Ours against the limit and the baseline."""
    got = {
        "cpu_ours_over_limit": figures["ours_poll_cpu_ms_per_1000"]
        / figures["limit_cpu_ms_per_1000"],
        "first_round_ours_over_limit": figures["ours_first_round_s"]
        / figures["limit_first_round_s"],
        "first_round_alone_ours_over_limit": figures["ours_first_round_alone_s"]
        / figures["limit_first_round_alone_s"],
        "first_round_ours_over_limit3": figures["ours_first_round_s"]
        / figures["limit3_first_round_s"],
    }
    for kind in ("plain", "gzip"):
        got[f"{kind}_p50_ours_over_baseline"] = (
            figures[f"ours_{kind}_p50_ms"] / figures[f"baseline_{kind}_p50_ms"]
        )
    return got


def scenario(projects: int, options: Options, *, config: str, watch_rss: bool) -> Result:
    if not options.interval:
        options = replace(options, interval=poll_interval(projects))
    figures: dict[str, float] = {"projects": float(projects), "interval_s": options.interval}
    other = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as tmp, simulator(projects) as sim:
        oms = Oms(sim.url)
        log(f"{projects} projects, {config}: oms-exporter")
        mine = ours(
            sim.url, oms, projects, options, config=config, workdir=Path(tmp), watch_rss=watch_rss
        )
        figures.update(mine.figures)
        step_details = CONFIGS[config].step_details
        figures["step_details"] = float(step_details)
        log(f"{projects} projects, {config}: bare loop, {mine.rounds} rounds of {mine.window}")
        figures.update(bare_loop(sim.url, projects, options, mine))
        log(f"{projects} projects, {config}: bare loop, 3 requests per project")
        figures.update(bare_loop_three(sim.url, projects, options, mine))
        log(f"{projects} projects, {config}: baseline")
        figures.update(baseline(sim.url, oms, projects, options, step_details=step_details))
    figures["other_load_cores"] = other.cores()  # every child has been reaped by now
    figures.update(ratios(figures))
    return Result(
        config=config,
        figures=figures,
        first_round_requests=mine.first_round,
        window_requests=mine.window,
        examples=mine.examples,
    )


def plan_runs(configs: list[str], counts: list[int]) -> list[tuple[str, int]]:
    """The first configuration at every count; the others at the largest, where the
    targets are judged, so that a second configuration costs one scenario, not three."""
    largest = max(counts)
    return [(configs[0], count) for count in counts] + [(c, largest) for c in configs[1:]]


def parse_projects(text: str) -> list[int]:
    counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("need comma-separated project counts of at least 1")
    return counts


def parse_configs(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if not names or unknown or len(set(names)) != len(names):
        known = ", ".join(CONFIGS)
        raise argparse.ArgumentTypeError(f"need distinct configurations of {known}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--projects", type=parse_projects, default=[100, 1000, 10000], help="100,1000,10000")
    add(
        "--configs",
        type=parse_configs,
        default=list(CONFIGS),
        help="configurations: the first at every count, the others at the largest "
        f"({','.join(CONFIGS)})",
    )
    add("--interval", type=float, default=0.0, help="poll interval, s (0: 2 s + 2 s/1,000)")
    add(
        "--rounds",
        type=int,
        default=report.STEADY_PERIOD,
        help=f"steady-state poll rounds measured after the first ({report.STEADY_PERIOD}: "
        f"the exporter asks some Actions every {report.STEADY_PERIOD}th round)",
    )
    add("--scrapes", type=int, default=30, help="/metrics samples per encoding (30)")
    add("--cold-scrapes", type=int, default=5, help="first scrapes after a round, timed (5)")
    add("--scrape-seconds", type=float, default=180.0, help="time cap of our scrapes (180)")
    add("--baseline-seconds", type=float, default=90.0, help="time cap of baseline scrapes")
    add("--rss-minutes", type=float, default=5.0, help="RSS watch at the largest count (5)")
    add("--concurrency", type=int, default=8, help="requests in flight (exporter default 8)")
    add("--out", type=Path, default=BENCH / "RESULTS.md", help="Markdown report")
    add("--json", type=Path, default=None, help="also write the figures as JSON")
    return parser


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into an exception, so every ``finally`` stops its process."""
    raise BenchError(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if min(args.rounds, args.scrapes) < 1 or args.cold_scrapes < 0:
        build_parser().error("need --rounds, --scrapes >= 1 and --cold-scrapes >= 0")
    if args.interval < 0 or args.rss_minutes < 0:
        build_parser().error("need --interval, --rss-minutes >= 0")
    options = Options(
        interval=args.interval,
        rounds=args.rounds,
        scrapes=args.scrapes,
        cold_scrapes=args.cold_scrapes,
        scrape_seconds=args.scrape_seconds,
        baseline_seconds=args.baseline_seconds,
        rss_minutes=args.rss_minutes,
        concurrency=args.concurrency,
    )
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    runs = plan_runs(args.configs, args.projects)
    results: list[Result] = []
    digests: list[str] = []
    try:
        for config, projects in runs:
            headline = config == args.configs[0] and projects == max(args.projects)
            watch = headline and options.rss_minutes > 0
            digests.append(code_digest())
            results.append(scenario(projects, options, config=config, watch_rss=watch))
    except (BenchError, subprocess.TimeoutExpired) as exc:
        log(f"benchmark failed: {exc}")
        if results:  # a long run keeps what it measured, beside the report, not over it
            out = args.out.with_name(args.out.stem + ".partial.md")
            write(results, args, out=out, options=options, command=command, digests=digests)
        return 1
    write(results, args, out=args.out, options=options, command=command, digests=digests)
    print(report.summary(results))
    return 0


def write(
    results: list[Result],
    args: argparse.Namespace,
    *,
    out: Path,
    options: Options,
    command: str,
    digests: list[str],
) -> None:
    """The Markdown report to `out`, and the JSON if asked for."""
    odd = [
        f"{r.config} {key}" for r in results for key, v in r.figures.items() if not math.isfinite(v)
    ]
    text = report.render(results, options=asdict(options), command=command.strip(), digests=digests)
    out.write_text(text)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(results, command=command.strip())))
    log(f"wrote {out}" + (f" (not finite: {sorted(set(odd))})" if odd else ""))


if __name__ == "__main__":
    raise SystemExit(main())
