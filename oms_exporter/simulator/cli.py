"""Run the OMS simulator: `oms-exporter simulate ...` as a process, or in-process for tests."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from oms_exporter.simulator import scenario
from oms_exporter.simulator.app import STATE, SimulatorConfig, create_app
from oms_exporter.simulator.state import V4_ACTIONS

SHUTDOWN_TIMEOUT_SECONDS = 2.0  # hanging requests are released on shutdown; don't wait 60 s


async def start_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start a simulator on host:port (0 picks a free port); return its runner and base URL.

    The caller owns the runner and must `await runner.cleanup()`.
    """
    runner = web.AppRunner(
        create_app(config),
        access_log=None,  # no per-request logging: the benchmark asks thousands per second
        handle_signals=False,
        handler_cancellation=True,  # a client that gives up frees its hanging request
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{url_host}:{bound_port}"


def build_parser() -> argparse.ArgumentParser:
    """Describe the simulator's flags."""
    parser = argparse.ArgumentParser(
        prog="oms-exporter simulate",
        description="Serve a simulated OceanBase Migration Service (OMS) API over HTTP.",
        epilog=_faults_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port, 0 picks a free one (8089)")
    parser.add_argument("--api", choices=("v4", "v3"), default="v4", help="OMS API flavour")
    parser.add_argument("--scenario", choices=("demo", "bulk"), default="demo")
    parser.add_argument("--projects", type=int, default=1000, help="project count for bulk")
    parser.add_argument("--username", default="admin", help="HTTP Basic user (admin)")
    parser.add_argument("--password", default="oms-demo", help="HTTP Basic password")
    parser.add_argument("--time-scale", type=float, default=1.0, help="lifecycle speed-up")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of 5xx/bad answers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    parser.add_argument(
        "--tables-per-project",
        type=int,
        default=8,
        metavar="N",
        help="tables in each project's transferMapping, as ListProjects lists it (8)",
    )
    parser.add_argument(
        "--without-action",
        action="append",
        default=[],
        choices=V4_ACTIONS,
        metavar="ACTION",
        help="act as an OMS without this 4.x Action: PARAM_ERROR (repeatable; "
        + ", ".join(V4_ACTIONS)
        + ")",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault_pair,
        metavar="PROJECT=FAULT",
        help="give one project a fault from the start (repeatable; faults below)",
    )
    return parser


def _fault_pair(text: str) -> tuple[str, str]:
    """Read PROJECT=FAULT; argparse turns the ValueError into a usage error."""
    project_id, sep, fault = text.rpartition("=")
    if not sep or not project_id or fault not in scenario.FAULTS:
        raise argparse.ArgumentTypeError(f"need PROJECT=FAULT with a known fault, not {text!r}")
    return project_id, fault


def _faults_epilog() -> str:
    """List every fault, and the two ways to set one."""
    width = max(len(name) for name in scenario.FAULT_HELP)
    lines = [f"  {name:<{width}}  {text}" for name, text in scenario.FAULT_HELP.items()]
    return "\n".join(
        [
            "faults, per project: --fault PROJECT=FAULT at start, or while running",
            '  curl -X POST URL/_sim/projects/PROJECT -d \'{"fault": "FAULT"}\'',
            *lines,
        ]
    )


async def serve(config: SimulatorConfig, *, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT, announcing the URL on stdout for whoever started us."""
    try:
        runner, url = await start_simulator(config, host=host, port=port)
    except OSError as exc:
        print(f"oms-exporter simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a --fault for a project the scenario does not have
        print(f"oms-exporter simulate: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        count = len(runner.app[STATE].projects)
        print(
            f"OMS simulator (api={config.api}, scenario={config.scenario}, {count} projects)"
            f" listening on {url}",
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run the simulator; 0 on a signalled stop."""
    args = build_parser().parse_args(argv)
    try:
        config = SimulatorConfig(
            api=args.api,
            scenario=args.scenario,
            projects=args.projects,
            username=args.username,
            password=args.password,
            time_scale=args.time_scale,
            fault_rate=args.fault_rate,
            seed=args.seed,
            faults=tuple(args.fault),
            tables_per_project=args.tables_per_project,
            without_actions=tuple(args.without_action),
        )
    except ValueError as exc:
        print(f"oms-exporter simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config, host=args.host, port=args.port))


if __name__ == "__main__":
    raise SystemExit(main())
