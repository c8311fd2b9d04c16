"""Discovery at real sizes: time and peak RSS of listing N projects of T tables each.

    .venv/bin/python bench/discovery.py                  # 1,000 projects x 500 tables
    .venv/bin/python bench/discovery.py --sizes 1000x8 1000x500 1000x2000 100x20000

For each size a simulator (its own process) serves the bulk scenario with T tables in
every project's transferMapping, as real ListProjects items carry them. A fresh Python
process (so its peak RSS is this discovery's alone) builds the exporter's real OMS client
with the default settings (1 MiB answer cap) and discovers every project ``--runs`` times;
it reports wall and CPU time per discovery, the requests and page sizes it needed, and
its RSS before the first discovery and at its peak (VmHWM). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from typing import Any

from harness import PASSWORD, PYTHON, REPO, USERNAME, BenchError, started

DEFAULT_SIZES = ("1000x500",)
MIB = 1024 * 1024


def status_kib(field: str) -> int:
    """A line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/self/status")


async def discover(url: str, runs: int, max_response_bytes: int) -> dict[str, Any]:
    """Inside the measured process: discover every project ``runs`` times."""
    from oms_exporter.oms.client import OmsClient
    from oms_exporter.oms.discovery import DiscoveryFilter
    from oms_exporter.oms.transport import Transport, make_session

    session = make_session(
        base_url=url, username=USERNAME, password=PASSWORD, timeout_seconds=120.0
    )
    sizes: list[int] = []
    transport = Transport(session=session, max_concurrency=8, max_response_bytes=max_response_bytes)
    original = transport.request

    async def counting(method: str, path: str, **kwargs: Any) -> Any:
        sizes.append(int(json.loads(kwargs.get("body") or b"{}").get("pageSize", 0)))
        return await original(method, path, **kwargs)

    transport.request = counting  # type: ignore[method-assign]
    client = OmsClient(transport=transport, api="v4", oms_name="bench")
    rss_before = status_kib("VmRSS")
    figures: list[dict[str, Any]] = []
    try:
        for _ in range(runs):
            sizes.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                found: int | str = len(await client.list_projects(DiscoveryFilter()))
            except Exception as error:  # the figure is what went wrong
                found = f"{type(error).__name__}: {error}"
            figures.append(
                {
                    "projects": found,
                    "wall_seconds": time.perf_counter() - wall,
                    "cpu_seconds": time.process_time() - cpu,
                    "requests": len(sizes),
                    "page_sizes": sorted(set(sizes), reverse=True),
                }
            )
    finally:
        await session.close()
    return {"runs": figures, "rss_before_kib": rss_before, "rss_peak_kib": status_kib("VmHWM")}


def page_bytes(url: str) -> int:
    """The size of one full ListProjects page (150 projects) as the simulator sends it."""
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - a local http:// URL we started
        f"{url}/api/v2?Action=ListProjects",
        data=json.dumps({"pageNumber": 1, "pageSize": 150}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        return len(answer.read())


def measure(
    projects: int, tables: int, runs: int, *, max_response_bytes: int, client_path: str | None
) -> dict[str, Any]:
    """One size: a simulator, one page's size, then the measured process."""
    argv = [PYTHON, "-m", "oms_exporter", "simulate", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--scenario", "bulk", "--projects", str(projects), "--api", "v4"]
    argv += ["--tables-per-project", str(tables)]
    argv += ["--username", USERNAME, "--password", PASSWORD]
    with started(argv, ready=r"listening on (http://\S+)", timeout_seconds=60) as sim:
        one_page = page_bytes(sim.url)
        env = {**os.environ, **({"PYTHONPATH": client_path} if client_path else {})}
        child_argv = [PYTHON, __file__, "--child", sim.url, "--runs", str(runs)]
        child_argv += ["--max-response-bytes", str(max_response_bytes)]
        child = subprocess.run(
            child_argv,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    if child.returncode != 0:
        raise BenchError(f"the measured process failed:\n{child.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(child.stdout)
    result.update(projects=projects, tables=tables, page_bytes=one_page)
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| projects x tables | one page of 150 (MB) | found | requests (page sizes) "
        "| first discovery: wall / CPU (s) | later: wall / CPU (s) "
        "| RSS before (MB) | peak RSS (MB) | peak - before (MB) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        first, later = r["runs"][0], r["runs"][1:] or r["runs"]
        found = first["projects"]
        found = f"{found:,}" if isinstance(found, int) else str(found)[:70]
        later_wall = sum(x["wall_seconds"] for x in later) / len(later)
        later_cpu = sum(x["cpu_seconds"] for x in later) / len(later)
        sizes = ", ".join(str(s) for s in first["page_sizes"])
        later_requests = later[-1]["requests"]
        before, peak = r["rss_before_kib"] / 1024, r["rss_peak_kib"] / 1024
        rows.append(
            f"| {r['projects']:,} x {r['tables']:,} | {r['page_bytes'] / 1e6:.1f} "
            f"| {found} | {first['requests']} ({sizes}); later {later_requests} "
            f"| {first['wall_seconds']:.2f} / {first['cpu_seconds']:.2f} "
            f"| {later_wall:.2f} / {later_cpu:.2f} "
            f"| {before:.1f} | {peak:.1f} | {peak - before:.1f} |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="NxT")
    parser.add_argument("--runs", type=int, default=3, help="discoveries per size (3)")
    parser.add_argument(
        "--max-response-bytes", type=int, default=MIB, help="the client's answer cap (1 MiB)"
    )
    parser.add_argument(
        "--client-path", help="import oms_exporter's client from this directory (a comparison)"
    )
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(discover(args.child, args.runs, args.max_response_bytes))))
        return 0
    results = []
    for size in args.sizes:
        projects, _, tables = size.partition("x")
        results.append(
            measure(
                int(projects),
                int(tables),
                args.runs,
                max_response_bytes=args.max_response_bytes,
                client_path=args.client_path,
            )
        )
        print(f"measured {size}", file=sys.stderr, flush=True)
    command = "$ .venv/bin/python bench/discovery.py " + " ".join(sys.argv[1:])
    print(f"{command.rstrip()}\n")
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs,"
        f" runs per size: {args.runs}, client answer cap: {args.max_response_bytes:,} bytes\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
