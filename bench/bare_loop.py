"""The limit: the exporter's poll requests sent by a bare aiohttp loop that ignores the answers.

Same requests (``POST /api/v2?Action=DescribeProjectProgress`` with ``{"id": ...}`` and
Basic auth, plus whatever other Actions the exporter sent, given per Action, with the
bodies the exporter sends them with, ``--bodies``), same session settings (one keep-alive
connector, ``limit`` = concurrency), same concurrency; no parsing, no store, no metrics.
Its CPU per project is the floor any aiohttp poller pays.

First one cold round, on a fresh session, sending what the exporter sent in its first round
(``--first-mix``): its end is reported as a Unix time, so the caller can time it from this
process's start as it times the exporter from its start. Then ``--rounds`` rounds sending,
together, what the exporter sent in as many steady-state rounds (``--mix``: totals, spread
evenly over the rounds, since the exporter asks some Actions only every Nth round).
Prints one JSON object on stdout.

    python bench/bare_loop.py --url http://127.0.0.1:PORT --projects 1000 --rounds 10 \\
        --first-mix ListProjects=7,DescribeProjectProgress=1000 \\
        --mix DescribeProjectProgress=10000,DescribeProjectSteps=1200 \\
        --bodies '{"ListProjects": {"pageNumber": "$page", "pageSize": 150}}'
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time

import aiohttp

PATH = "/api/v2?Action="
Plan = list[tuple[str, tuple[str, ...]]]  # (project id, the Actions asked about it)
# A request body per Action: "$id" stands for the project's ID, "$page" for 1, 2, ... in
# the order of that Action's requests in the round (ListProjects pages).
Bodies = dict[str, dict[str, object]]
DEFAULT_BODY: dict[str, object] = {"id": "$id"}


def project_ids(count: int) -> list[str]:
    """The ids the simulator's bulk scenario gives its projects."""
    return [f"p_sim_{index:06d}" for index in range(1, count + 1)]


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def plan(ids: list[str], mix: dict[str, int]) -> Plan:
    """Per project, the Actions of one round: Action A goes to the first mix[A] projects,
    around again from the first if mix[A] is more than there are projects."""
    asked: list[list[str]] = [[] for _ in ids]
    for action, count in mix.items():
        for index in range(count):
            asked[index % len(ids)].append(action)
    return [(pid, tuple(actions)) for pid, actions in zip(ids, asked, strict=True) if actions]


def spread(mix: dict[str, int], rounds: int) -> list[dict[str, int]]:
    """Split the totals of `rounds` rounds into rounds that add up to exactly those totals."""
    return [
        {action: (r + 1) * count // rounds - r * count // rounds for action, count in mix.items()}
        for r in range(rounds)
    ]


def body(template: dict[str, object], project_id: str, page: int) -> dict[str, object]:
    """One request's body, built per request as the exporter builds its own."""
    return {
        key: project_id if value == "$id" else page if value == "$page" else value
        for key, value in template.items()
    }


async def send_all(
    session: aiohttp.ClientSession,
    base_url: str,
    work: Plan,
    *,
    bodies: Bodies,
    concurrency: int,
) -> tuple[int, int]:
    """Send one round with `concurrency` workers; return (requests sent, HTTP 200 answers)."""
    queue = iter(work)
    pages: dict[str, int] = {}
    sent = ok = 0

    async def worker() -> None:
        nonlocal sent, ok
        for project_id, actions in queue:  # the shared iterator hands out each project once
            for action in actions:
                pages[action] = page = pages.get(action, 0) + 1
                data = body(bodies.get(action, DEFAULT_BODY), project_id, page)
                async with session.post(base_url + action, json=data) as answer:
                    await answer.read()
                    sent += 1
                    ok += answer.status == 200

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent, ok


async def run(
    *,
    base_url: str,
    username: str,
    password: str,
    projects: int,
    rounds: int,
    first_mix: dict[str, int],
    mix: dict[str, int],
    bodies: Bodies,
    concurrency: int,
    timeout_seconds: float,
) -> dict[str, float]:
    """The cold first round (also the warm-up of the rest), then `rounds` measured rounds."""
    ids = project_ids(projects)
    first_started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        # the header the exporter sends, built once as the exporter builds it
        headers={"Accept": "application/json", "Authorization": basic_auth(username, password)},
    ) as session:
        url = base_url.rstrip("/") + PATH
        first_sent, first_ok = await send_all(
            session, url, plan(ids, first_mix), bodies=bodies, concurrency=concurrency
        )
        first_seconds, first_end_unix = time.perf_counter() - first_started, time.time()
        work = [plan(ids, one) for one in spread(mix, rounds)]
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        sent = ok = 0
        for one in work:
            round_sent, round_ok = await send_all(
                session, url, one, bodies=bodies, concurrency=concurrency
            )
            sent, ok = sent + round_sent, ok + round_ok
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
    # The mean round, as for the exporter: its rounds differ, every Nth one asks more.
    return {
        "first_round_requests": float(first_sent),
        "first_round_ok": float(first_ok),
        "first_round_seconds": first_seconds,
        "first_round_end_unix": first_end_unix,
        "requests": float(sent),
        "ok": float(ok),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cpu_ms_per_1000_projects": cpu / rounds / projects * 1e6,
        "cpu_ms_per_1000_requests": cpu / sent * 1e6 if sent else 0.0,
        "wall_ms_per_1000_projects": wall / rounds / projects * 1e6,
    }


def parse_mix(text: str) -> dict[str, int]:
    """`Action=count,...`: the requests of each Action."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        action, _, count = part.partition("=")
        if not action.isalnum() or not count.isdigit():
            raise argparse.ArgumentTypeError(f"want Action=count, not {part!r}")
        mix[action] = int(count)
    return mix


def parse_bodies(text: str) -> Bodies:
    """`{"Action": {...}, ...}`: the body templates of the Actions not asked with an id."""
    bodies = json.loads(text)
    if not isinstance(bodies, dict) or not all(isinstance(b, dict) for b in bodies.values()):
        raise argparse.ArgumentTypeError("want a JSON object of Action: body object")
    return bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="simulator base URL (127.0.0.1 only)")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--password-env", default="BENCH_OMS_PASSWORD", help="environment variable with it"
    )
    parser.add_argument("--projects", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="rounds measured after the first")
    parser.add_argument(
        "--mix", type=parse_mix, default=None, help="Action=count of all measured rounds together"
    )
    parser.add_argument(
        "--first-mix", type=parse_mix, default=None, help="Action=count of the first round"
    )
    parser.add_argument(
        "--bodies", type=parse_bodies, default={}, help='JSON {Action: body}, else {"id": "$id"}'
    )
    parser.add_argument("--concurrency", type=int, default=8, help="the exporter's default")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    args = parser.parse_args(argv)
    if args.projects < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error("need --projects, --rounds and --concurrency of at least 1")
    result = asyncio.run(
        run(
            base_url=args.url,
            username=args.username,
            password=os.environ.get(args.password_env, ""),
            projects=args.projects,
            rounds=args.rounds,
            first_mix=args.first_mix or {"DescribeProjectProgress": args.projects},
            mix=args.mix or {"DescribeProjectProgress": args.projects * args.rounds},
            bodies=args.bodies,
            concurrency=args.concurrency,
            timeout_seconds=args.timeout,
        )
    )
    json.dump(result, sys.stdout)
    print()
    all_ok = result["ok"] == result["requests"]
    return 0 if all_ok and result["first_round_ok"] == result["first_round_requests"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
