"""Command line: flags -> Settings -> run the exporter (or the simulator, or a config check)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from oms_exporter import __version__
from oms_exporter.config import ExporterConfig, load_config
from oms_exporter.settings import ConfigError, Settings, flag_name, parse_listen_address

Loader = Callable[[], ExporterConfig]

log = logging.getLogger("oms_exporter")

EXIT_CONFIG = 2
DEMO_USERNAME = "admin"
DEMO_PASSWORD = "oms-demo"  # noqa: S105 - the built-in simulator's published demo password


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Say what is wrong in one line, without the usage block."""
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


_BOOL_FIELDS = {"tls_insecure_skip_verify"}
_YAML_ONLY = {"targets"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="oms-exporter",
        description="Prometheus exporter for OceanBase Migration Service project progress. "
        "Every flag can also be set as OMS_EXPORTER_<NAME> or in the --config YAML file. "
        "Run 'oms-exporter simulate --help' for the built-in OMS simulator, "
        "'oms-exporter cutover --help' to check a migration's cut-over readiness.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"oms-exporter {__version__}")
    parser.add_argument("--config", type=Path, help="YAML file of settings (snake_case keys)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in OMS simulator and export its projects",
    )
    for name, field in Settings.model_fields.items():
        if name in _YAML_ONLY:
            continue
        if name in _BOOL_FIELDS:
            parser.add_argument(
                flag_name(name), dest=name, action="store_const", const=True, help=field.description
            )
        else:
            parser.add_argument(flag_name(name), dest=name, help=field.description)
    return parser


def _fail(message: str) -> int:
    print(f"oms-exporter: {message}", file=sys.stderr)
    return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["simulate"]:
        from oms_exporter.simulator.cli import main as simulate

        return simulate(args_list[1:])
    if args_list[:1] == ["cutover"]:
        from oms_exporter.cutover import main as cutover

        return cutover(args_list[1:])
    args = vars(build_parser().parse_args(args_list))
    config_file: Path | None = args.pop("config", None)
    check_only = bool(args.pop("check_config", False))
    demo = bool(args.pop("demo", False))
    if demo:
        return asyncio.run(_run_demo(args, config_file))

    def loader() -> ExporterConfig:
        return load_config(args, config_file)

    try:
        config = loader()
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}")
    if check_only:
        static = sum(len(target.project_ids) for target in config.targets)
        discovering = [target.name for target in config.targets if target.discovery is not None]
        note = f", discovery on {', '.join(discovering)}" if discovering else ""
        names = ", ".join(target.name for target in config.targets)
        print(f"configuration OK: {static} projects on {names}{note}")
        return 0
    return _serve(config, loader=loader)


def _serve(config: ExporterConfig, *, loader: Loader, banner: str | None = None) -> int:
    from oms_exporter import runtime

    try:
        return asyncio.run(runtime.run(config, loader=loader, banner=banner))
    except runtime.StartupError as exc:
        return _fail(str(exc))


async def _start_demo_simulator() -> tuple[web.AppRunner, str]:
    from oms_exporter.simulator.app import SimulatorConfig
    from oms_exporter.simulator.cli import start_simulator

    config = SimulatorConfig(
        api="v4", scenario="demo", username=DEMO_USERNAME, password=DEMO_PASSWORD
    )
    return await start_simulator(config, host="127.0.0.1", port=0)


async def _run_demo(args: dict[str, Any], config_file: Path | None) -> int:
    """Run the simulator and the exporter in one process, pointed at each other.

    The demo changes defaults only: flags, the environment and --config still win.
    """
    from oms_exporter import runtime
    from oms_exporter.simulator.scenario import demo_projects

    sim_runner, sim_url = await _start_demo_simulator()
    defaults: dict[str, Any] = {
        "oms_url": sim_url,
        "oms_name": "demo",
        "oms_username": DEMO_USERNAME,
        "oms_password": DEMO_PASSWORD,
        "project_ids": [project.id for project in demo_projects()],
        "poll_interval": 5,
        "listen_address": "127.0.0.1:18089",
    }

    def loader() -> ExporterConfig:
        return load_config(args, config_file, defaults=defaults)

    try:
        try:
            config = loader()
        except ConfigError as exc:
            return _fail(f"invalid configuration: {exc}")
        host, _port = parse_listen_address(config.listen_address)
        shown = host if host not in (None, "0.0.0.0", "::") else "127.0.0.1"
        banner = (
            f"oms-exporter demo: simulated OMS at {sim_url}\n"
            f"  metrics:     http://{shown}:{{port}}/metrics\n"
            f"  status page: http://{shown}:{{port}}/\n"
            "Press Ctrl-C to stop."
        )
        try:
            return await runtime.run(config, loader=loader, banner=banner)
        except runtime.StartupError as exc:
            return _fail(str(exc))
    finally:
        with contextlib.suppress(Exception):
            await sim_runner.cleanup()
