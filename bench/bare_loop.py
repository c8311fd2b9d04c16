"""The limit: the exporter's poll requests sent by a bare aiohttp loop that ignores the answers.

Same requests (``POST /api/v2?Action=DescribeProjectProgress`` with ``{"id": ...}`` and
Basic auth, plus whatever other Actions the exporter sent per round, given as ``--mix``),
same session settings (one keep-alive connector, ``limit`` = concurrency), same
concurrency; no parsing, no store, no metrics. Its CPU per project is the floor any aiohttp
poller pays. Prints one JSON object on stdout.

    python bench/bare_loop.py --url http://127.0.0.1:PORT --projects 1000 --rounds 3 \\
        --mix DescribeProjectProgress=1000,DescribeProjectSteps=950
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time

import aiohttp

PATH = "/api/v2?Action="
Plan = list[tuple[str, tuple[str, ...]]]  # (project id, the Actions asked about it)


def project_ids(count: int) -> list[str]:
    """The ids the simulator's bulk scenario gives its projects."""
    return [f"p_sim_{index:06d}" for index in range(1, count + 1)]


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def plan(ids: list[str], mix: dict[str, int]) -> Plan:
    """Per project, the Actions of one round: Action A goes to the first mix[A] projects."""
    return [(pid, tuple(a for a, count in mix.items() if i < count)) for i, pid in enumerate(ids)]


async def send_all(
    session: aiohttp.ClientSession, base_url: str, work: Plan, *, concurrency: int
) -> tuple[int, int]:
    """Send one round with `concurrency` workers; return (requests sent, HTTP 200 answers)."""
    queue = iter(work)
    sent = ok = 0

    async def worker() -> None:
        nonlocal sent, ok
        for project_id, actions in queue:  # the shared iterator hands out each project once
            for action in actions:
                async with session.post(base_url + action, json={"id": project_id}) as answer:
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
    mix: dict[str, int],
    concurrency: int,
    timeout_seconds: float,
) -> dict[str, float]:
    """One warm-up round (connections, caches), then `rounds` measured rounds."""
    work = plan(project_ids(projects), mix)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        # the header the exporter sends, built once as the exporter builds it
        headers={"Accept": "application/json", "Authorization": basic_auth(username, password)},
    ) as session:
        url = base_url.rstrip("/") + PATH
        await send_all(session, url, work, concurrency=concurrency)
        cpu: list[float] = []
        wall: list[float] = []
        sent = ok = 0
        for _ in range(rounds):
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            round_sent, round_ok = await send_all(session, url, work, concurrency=concurrency)
            cpu.append(time.process_time() - cpu_started)
            wall.append(time.perf_counter() - wall_started)
            sent, ok = sent + round_sent, ok + round_ok
    # The median round, as for the exporter: one disturbed round does not move the figure.
    per_round = sent / rounds
    return {
        "requests": float(sent),
        "ok": float(ok),
        "cpu_seconds": sum(cpu),
        "wall_seconds": sum(wall),
        "cpu_ms_per_1000_projects": statistics.median(cpu) / projects * 1e6,
        "cpu_ms_per_1000_requests": statistics.median(cpu) / per_round * 1e6 if sent else 0.0,
        "wall_ms_per_1000_projects": statistics.median(wall) / projects * 1e6,
    }


def parse_mix(text: str) -> dict[str, int]:
    """`Action=count,...`: the requests per round of each Action."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        action, _, count = part.partition("=")
        if not action.isalnum() or not count.isdigit():
            raise argparse.ArgumentTypeError(f"want Action=count, not {part!r}")
        mix[action] = int(count)
    return mix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="simulator base URL (127.0.0.1 only)")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--password-env", default="BENCH_OMS_PASSWORD", help="environment variable with it"
    )
    parser.add_argument("--projects", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--mix", type=parse_mix, default=None, help="Action=count per round (progress of all)"
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
            mix=args.mix or {"DescribeProjectProgress": args.projects},
            concurrency=args.concurrency,
            timeout_seconds=args.timeout,
        )
    )
    json.dump(result, sys.stdout)
    print()
    return 0 if result["ok"] == result["requests"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
