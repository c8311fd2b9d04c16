"""Command line: flags -> Settings -> run the exporter (or the simulator, or a config check)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from oms_exporter import __version__
from oms_exporter.settings import (
    ConfigError,
    Settings,
    flag_name,
    load_settings,
    parse_listen_address,
)
from oms_exporter.webconfig import WebConfig, load_web_config

log = logging.getLogger("oms_exporter")

EXIT_CONFIG = 2
SHUTDOWN_TIMEOUT_SECONDS = 3.0
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
        "Run 'oms-exporter simulate --help' for the built-in OMS simulator.",
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
    args = vars(build_parser().parse_args(args_list))
    config_file: Path | None = args.pop("config", None)
    check_only = bool(args.pop("check_config", False))
    demo = bool(args.pop("demo", False))
    if demo:
        return asyncio.run(_run_demo(args))
    try:
        settings = load_settings(args, config_file)
        web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}")
    if check_only:
        targets = settings.oms_targets()
        static = sum(len(target.project_ids) for target in targets)
        discovering = [target.label for target in targets if target.discovers]
        note = f", discovery on {', '.join(discovering)}" if discovering else ""
        print(f"configuration OK: {static} projects on {settings.oms_label}{note}")
        return 0
    return asyncio.run(
        serve(settings, web_config=web_config, loader=lambda: load_settings(args, config_file))
    )


async def serve(
    settings: Settings,
    *,
    web_config: WebConfig | None = None,
    loader: Callable[[], Settings] | None = None,
    banner: str | None = None,
) -> int:
    """Run the exporter until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    from oms_exporter.logsetup import setup_logging
    from oms_exporter.runtime import Exporter
    from oms_exporter.web import create_app

    setup_logging(level=settings.log_level, fmt=settings.log_format)
    host, port = parse_listen_address(settings.listen_address)
    exporter = Exporter(settings, loader=loader)
    runner = web.AppRunner(
        create_app(exporter, web_config),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        ssl_context = web_config.ssl_context if web_config else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        return _fail(f"cannot listen on {settings.listen_address}: {exc.strerror}")
    scheme = "https" if web_config and web_config.ssl_context else "http"
    bound = ", ".join(f"{addr[0]}:{addr[1]}" for addr in runner.addresses)
    log.info(
        "listening on %s",
        bound,
        extra={
            "scheme": scheme,
            "oms": settings.oms_label,
            "version": __version__,
        },
    )
    if banner:
        port_bound = runner.addresses[0][1] if runner.addresses else port
        print(banner.format(port=port_bound), flush=True)
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)

    async def reload_on_sighup() -> None:
        while True:
            await reload_requested.wait()
            reload_requested.clear()
            await exporter.reload()

    reloader = asyncio.create_task(reload_on_sighup())
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
        await runner.cleanup()
    return 0


async def _run_demo(args: dict[str, Any]) -> int:
    """Run the simulator and the exporter in one process, pointed at each other."""
    from oms_exporter.simulator.app import SimulatorConfig
    from oms_exporter.simulator.cli import start_simulator
    from oms_exporter.simulator.scenario import demo_projects

    config = SimulatorConfig(
        api="v4", scenario="demo", username=DEMO_USERNAME, password=DEMO_PASSWORD
    )
    sim_runner, sim_url = await start_simulator(config, host="127.0.0.1", port=0)
    values: dict[str, Any] = {
        "oms_url": sim_url,
        "oms_name": "demo",
        "oms_username": DEMO_USERNAME,
        "oms_password": DEMO_PASSWORD,
        "project_ids": [project.id for project in demo_projects()],
        "poll_interval": 5,
        "listen_address": "127.0.0.1:18089",
    }
    values.update(args)
    try:
        settings = load_settings(values)
    except ConfigError as exc:
        await sim_runner.cleanup()
        return _fail(f"invalid configuration: {exc}")
    host, _port = parse_listen_address(settings.listen_address)
    shown = host if host not in (None, "0.0.0.0", "::") else "127.0.0.1"
    banner = (
        f"oms-exporter demo: simulated OMS at {sim_url}\n"
        f"  metrics:     http://{shown}:{{port}}/metrics\n"
        f"  status page: http://{shown}:{{port}}/\n"
        "Press Ctrl-C to stop."
    )
    try:
        return await serve(settings, banner=banner)
    finally:
        with contextlib.suppress(Exception):
            await sim_runner.cleanup()
