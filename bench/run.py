"""Benchmark oms-exporter against its simulator: poll cost, /metrics latency, memory.

For each project count, on 127.0.0.1: the simulator (bulk scenario, 4.x API);
oms-exporter with its defaults (poll CPU, /metrics latency, RSS); a bare aiohttp loop
sending the requests oms-exporter sent per round (the limit); the naive prometheus-client
baseline (/metrics latency, RSS). Figures go to a Markdown report (and, with --json, to a
JSON file).

    .venv/bin/python bench/run.py                  # make bench: 100, 1,000 and 10,000
    .venv/bin/python bench/run.py --projects 50 --interval 1 --rounds 2 --scrapes 5 \\
        --rss-minutes 0.05 --out /tmp/RESULTS.md --json /tmp/results.json   # the smoke run
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
from dataclasses import dataclass, replace
from pathlib import Path

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
    fetch,
    metric,
    rss_bytes,
    simulator,
    started,
    wait_until,
)
from measure import MB, measure_poll, measure_scrapes, watch_memory

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Options:
    interval: float  # 0: chosen per project count, see poll_interval()
    rounds: int
    scrapes: int
    scrape_seconds: float
    baseline_seconds: float
    rss_minutes: float
    concurrency: int
    # Off by default: the targets are stated for the first issue's metrics contract
    # (about 25 series a project); step details add about 40 more, mostly step status.
    step_details: bool = False


def poll_interval(projects: int) -> float:
    """2 s plus 1.3 s per 1,000 projects: each round (~0.5 s per 1,000 here) ends well before
    the next starts, so there is quiet time to measure in, and small counts don't wait long."""
    return round(2.0 + projects * 0.0013, 1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bare_loop(
    url: str, projects: int, options: Options, *, mix: dict[str, int]
) -> dict[str, float]:
    """The limit: the exporter's requests of one round, from a loop that ignores the answers."""
    plan = ",".join(f"{action}={count}" for action, count in mix.items())
    argv = [PYTHON, str(BENCH / "bare_loop.py"), "--url", url, "--username", USERNAME]
    argv += ["--projects", str(projects), "--rounds", str(options.rounds), "--mix", plan]
    argv += ["--concurrency", str(options.concurrency), "--password-env", PASSWORD_ENV]
    timeout = 60 + sum(mix.values()) * (options.rounds + 1) / 200
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
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "limit_cpu_ms_per_1000": result["cpu_ms_per_1000_projects"],
        "limit_cpu_ms_per_1000_requests": result["cpu_ms_per_1000_requests"],
        "limit_wall_ms_per_1000": result["wall_ms_per_1000_projects"],
    }


def ours(
    url: str, oms: Oms, projects: int, options: Options, *, workdir: Path, watch_rss: bool
) -> tuple[dict[str, float], dict[str, int]]:
    """oms-exporter with its defaults, configured from a YAML file listing every project.

    Also return one round's requests per Action, for the bare loop to send the same.
    """
    config = workdir / "exporter.yaml"
    ids = "".join(f"  - p_sim_{index:06d}\n" for index in range(1, projects + 1))
    config.write_text("project_ids:\n" + ids)
    env = {
        "OMS_EXPORTER_OMS_URL": url,
        "OMS_EXPORTER_OMS_USERNAME": USERNAME,
        "OMS_EXPORTER_OMS_PASSWORD": PASSWORD,
        "OMS_EXPORTER_API": "v4",
        "OMS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
        "OMS_EXPORTER_POLL_INTERVAL": f"{options.interval:g}",
        "OMS_EXPORTER_MAX_CONCURRENCY": str(options.concurrency),
        "OMS_EXPORTER_STEP_DETAILS": "true" if options.step_details else "false",
    }
    argv = [PYTHON, "-m", "oms_exporter", "--config", str(config)]
    figures: dict[str, float] = {}
    with started(argv, env=env, ready=r"listening on (\S+?:\d+)", timeout_seconds=60) as exp:
        base = "http://" + exp.url
        wait_until(
            lambda: fetch(base + "/readyz").status == 200,
            timeout_seconds=60 + projects / 50,
            what="the exporter's first poll round",
            every=0.2,
        )
        log(f"  ours: ready, measuring {options.rounds} poll rounds")
        poll, mix = measure_poll(
            exp.pid,
            oms,
            projects=projects,
            rounds=options.rounds,
            interval_seconds=options.interval,
        )
        figures.update({f"ours_{key}": value for key, value in poll.items()})
        body = fetch(base + "/metrics").body.decode()
        wall = metric(body, "oms_exporter_last_poll_round_duration_seconds")
        figures["ours_round_wall_s"] = wall
        figures["ours_round_wall_ms_per_1000"] = wall / projects * 1e6
        figures["ours_projects_up"] = float(count_samples(body, name="oms_project_up", value=1.0))
        log("  ours: scraping /metrics between poll rounds")
        scrapes = measure_scrapes(
            base + "/metrics",
            oms,
            projects=projects,
            samples=options.scrapes,
            cold_rounds=options.rounds,
            budget_seconds=options.scrape_seconds,
            interval_seconds=options.interval,
        )
        figures.update({f"ours_{key}": value for key, value in scrapes.items()})
        figures["ours_rss_mb"] = rss_bytes(exp.pid) / MB
        if watch_rss:
            log(f"  ours: polling for {options.rss_minutes:g} min, watching RSS")
            memory = watch_memory(
                exp.pid,
                base + "/metrics",
                minutes=options.rss_minutes,
                scrape_every_seconds=options.interval,
                log=log,
            )
            figures.update({f"ours_{key}": value for key, value in memory.items()})
    return figures, mix


def baseline(url: str, oms: Oms, projects: int, options: Options) -> dict[str, float]:
    """The naive exporter: polls once (so its scrapes are measured alone), then serves."""
    argv = [PYTHON, str(BENCH / "baseline_exporter.py"), "--oms-url", url]
    argv += ["--username", USERNAME, "--password-env", PASSWORD_ENV, "--projects", str(projects)]
    argv += ["--interval", "86400", "--concurrency", str(options.concurrency)]
    if not options.step_details:
        argv.append("--no-step-details")
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


def scenario(projects: int, options: Options, *, watch_rss: bool) -> dict[str, float]:
    if not options.interval:
        options = replace(options, interval=poll_interval(projects))
    figures: dict[str, float] = {"projects": float(projects), "interval_s": options.interval}
    other = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as tmp, simulator(projects) as sim:
        oms = Oms(sim.url)
        log(f"{projects} projects: oms-exporter")
        workdir = Path(tmp)
        mine, mix = ours(sim.url, oms, projects, options, workdir=workdir, watch_rss=watch_rss)
        figures.update(mine)
        log(f"{projects} projects: bare loop, per round {mix}")
        figures.update(bare_loop(sim.url, projects, options, mix=mix))
        log(f"{projects} projects: baseline")
        figures.update(baseline(sim.url, oms, projects, options))
    figures["other_load_cores"] = other.cores()  # every child has been reaped by now
    figures["cpu_ours_over_limit"] = (
        figures["ours_poll_cpu_ms_per_1000"] / figures["limit_cpu_ms_per_1000"]
    )
    for kind in ("plain", "gzip"):
        figures[f"{kind}_p50_ours_over_baseline"] = (
            figures[f"ours_{kind}_p50_ms"] / figures[f"baseline_{kind}_p50_ms"]
        )
    return figures


def parse_projects(text: str) -> list[int]:
    counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("need comma-separated project counts of at least 1")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--projects", type=parse_projects, default=[100, 1000, 10000], help="100,1000,10000")
    add("--interval", type=float, default=0.0, help="poll interval, s (0: 2 s + 1.3 s/1,000)")
    add("--rounds", type=int, default=5, help="poll rounds measured per scenario (5)")
    add("--scrapes", type=int, default=30, help="/metrics samples per encoding (30)")
    add("--scrape-seconds", type=float, default=120.0, help="time cap of our scrapes (120)")
    add("--baseline-seconds", type=float, default=90.0, help="time cap of baseline scrapes")
    add("--rss-minutes", type=float, default=5.0, help="RSS watch at the largest count (5)")
    add("--concurrency", type=int, default=8, help="requests in flight (exporter default 8)")
    add("--out", type=Path, default=BENCH / "RESULTS.md", help="Markdown report")
    add("--json", type=Path, default=None, help="also write the figures as JSON")
    add(
        "--step-details",
        action="store_true",
        help="also poll and publish 4.x step details, in ours and the baseline (off)",
    )
    return parser


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into an exception, so every ``finally`` stops its process."""
    raise BenchError(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.rounds < 1 or args.scrapes < 1 or args.interval < 0 or args.rss_minutes < 0:
        build_parser().error("need --rounds, --scrapes >= 1, --interval, --rss-minutes >= 0")
    options = Options(
        interval=args.interval,
        rounds=args.rounds,
        scrapes=args.scrapes,
        scrape_seconds=args.scrape_seconds,
        baseline_seconds=args.baseline_seconds,
        rss_minutes=args.rss_minutes,
        concurrency=args.concurrency,
        step_details=args.step_details,
    )
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    largest = max(args.projects)
    results: list[dict[str, float]] = []
    digests: list[str] = []
    try:
        for projects in args.projects:
            watch = projects == largest and options.rss_minutes > 0
            digests.append(code_digest())
            results.append(scenario(projects, options, watch_rss=watch))
    except (BenchError, subprocess.TimeoutExpired) as exc:
        log(f"benchmark failed: {exc}")
        return 1
    odd = [key for row in results for key, value in row.items() if not math.isfinite(value)]
    text = report.render(results, options=vars(args), command=command.strip(), digests=digests)
    args.out.write_text(text)
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "machine": report.machine()}))
    log(f"wrote {args.out}" + (f" (not finite: {sorted(set(odd))})" if odd else ""))
    print(report.summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
