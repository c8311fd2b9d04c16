"""Own the running exporter: its tasks, sessions and their closing, reload and shutdown.

``cli.py`` parses and hands a complete ``ExporterConfig`` over; ``web.py`` serves. Here:
- the poller runs under a supervisor that logs a dead task's traceback once, counts it
  and restarts it with backoff, and ``health`` says when polling has stalled;
- a reload builds the whole new configuration first (in a thread: reading files must not
  stall scrapes) and swaps it in only when all of it succeeded; concurrent requests share
  one reload's result; a replaced session is closed once the round using it has ended;
- ``stop`` cancels and awaits every task, then closes every session, whatever failed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from oms_exporter import __version__
from oms_exporter.collector import ProjectCollector
from oms_exporter.config import ExporterConfig, TargetConfig
from oms_exporter.heap import TRIM_AFTER_BYTES, trim, tune_memory
from oms_exporter.logsetup import setup_logging
from oms_exporter.oms.client import OmsClient
from oms_exporter.oms.httpclient import HttpClient
from oms_exporter.oms.transport import Transport, make_session
from oms_exporter.poller import Poller
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.settings import ConfigError, parse_listen_address
from oms_exporter.store import Store

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS: Final = 3.0
RESTART_MIN_SECONDS: Final = 1.0
RESTART_MAX_SECONDS: Final = 30.0
# Settings that only take effect at start-up.
_RESTART_ONLY: Final = ("listen_address", "web_config_file")

Loader = Callable[[], ExporterConfig]
Sleep = Callable[[float], Awaitable[None]]


class StartupError(Exception):
    """The exporter cannot start (its port is taken); the message is one line."""


@dataclass(frozen=True, slots=True)
class _Connection:
    """One OMS target's session and client, and what they were built from."""

    session: HttpClient
    client: OmsClient
    key: tuple[object, ...]


class Exporter:
    """Every long-lived object of a running exporter; ``start`` and ``stop`` pair them."""

    def __init__(
        self,
        config: ExporterConfig,
        *,
        loader: Loader | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.store = Store()
        self.metrics = SelfMetrics()
        self.poller = Poller(
            store=self.store,
            metrics=self.metrics,
            interval_seconds=config.poll_interval_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        self.collector = ProjectCollector(
            self.store,
            stale_after_seconds=config.stale_after_seconds,
            poll_interval_seconds=config.poll_interval_seconds,
            clock=clock,
        )
        self._loader = loader
        self._monotonic = monotonic
        self._sleep = sleep
        self._connections: dict[str, _Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Task[str | None] | None = None
        self._started_at: float | None = None

    # -- life -------------------------------------------------------------------------

    async def start(self) -> None:
        """Apply the configuration and start polling under supervision."""
        self._started_at = self._monotonic()
        self._swap(self.config)
        self._spawn(self._supervise("poller", self.poller.run), name="oms-exporter-poller")
        self._spawn(self._supervise("prepare", self._prepare), name="oms-exporter-prepare")

    async def stop(self) -> None:
        """Cancel and await every task, then close every session; nothing is skipped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("task failed while stopping: %s", type(result).__name__)
        sessions = [connection.session for connection in self._connections.values()]
        self._connections.clear()
        await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)

    def _spawn(self, coroutine: Awaitable[None], *, name: str) -> None:
        """Start a task this object awaits on ``stop``: no task is fire-and-forget."""
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` forever: log a failure's traceback once, count it, restart later."""
        delay = RESTART_MIN_SECONDS
        while True:
            started = self._monotonic()
            try:
                await run()
                raise RuntimeError(f"the {name} task returned")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "task %s failed, restarting in %g s", name, delay, extra={"task": name}
                )
                self.metrics.task_restarts.labels(name).inc()
            if self._monotonic() - started > RESTART_MAX_SECONDS:
                delay = RESTART_MIN_SECONDS  # it had run a while: start the backoff over
            await self._sleep(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)

    async def _prepare(self) -> None:
        """After each poll round, have the next scrape's lines ready before it comes, and
        give back the memory their texts took once deflated."""
        while True:
            await self.poller.round_ended.wait()
            self.poller.round_ended.clear()
            await self.collector.prepare()
            if self.collector.take_settled_bytes() >= TRIM_AFTER_BYTES:
                await asyncio.to_thread(trim)

    def health(self) -> str | None:
        """None while polling keeps up, else why not: backs /healthz and /readyz.

        Unhealthy when no round has completed, and no project poll has ended either, for
        3 poll intervals plus the request timeout. A round of 10,000 projects on a slow OMS
        may take longer than that while it keeps polling: restarting it would never let
        it finish, so only a poller that makes no progress at all counts as wedged.
        """
        started = self._started_at
        if started is None:
            return "not started"
        last = self.poller.last_progress
        since = self._monotonic() - (last if last is not None and last > started else started)
        limit = 3 * self.config.poll_interval_seconds + self.config.request_timeout_seconds
        if since > limit:
            return (
                f"no poll round completed and no project polled for {since:.0f} s "
                f"(limit {limit:g} s)"
            )
        return None

    # -- reload -----------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: reload in the background; the result is logged and counted."""
        self._spawn(self._reload_quietly(), name="oms-exporter-reload")

    async def _reload_quietly(self) -> None:
        await self.reload()

    async def reload(self) -> str | None:
        """Load the configuration again; on error keep the running one and return why.

        Requests arriving while a reload runs share its result.
        """
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload(), name="oms-exporter-reloading")
            self._tasks.add(self._reloading)
            self._reloading.add_done_callback(self._tasks.discard)
        return await asyncio.shield(self._reloading)

    async def _reload(self) -> str | None:
        if self._loader is None:
            return self._refuse("no configuration source to reload")
        try:
            config = await asyncio.to_thread(self._loader)
        except ConfigError as exc:
            return self._refuse(str(exc))
        except Exception as exc:  # a reload never ends the signal handler or the loop
            log.debug("reload failed", exc_info=exc)
            return self._refuse(f"internal error while loading: {type(exc).__name__}")
        for name in _RESTART_ONLY:
            if getattr(config, name) != getattr(self.config, name):
                log.warning("%s changed: it takes effect at the next restart", name)
        self._swap(config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_timestamp.set_to_current_time()
        log.info(
            "configuration reloaded",
            extra={"oms": ", ".join(target.name for target in config.targets)},
        )
        return None

    def _refuse(self, why: str) -> str:
        self.metrics.reload_ok.set(0)
        log.error("reload failed, keeping the running configuration: %s", why)
        return why

    def _swap(self, config: ExporterConfig) -> None:
        """Make ``config`` the running one; nothing here reads files or can fail on input."""
        if (config.log_level, config.log_format) != (self.config.log_level, self.config.log_format):
            setup_logging(level=config.log_level, fmt=config.log_format)
        connections = {target.name: self._connection(config, target) for target in config.targets}
        for name, old in self._connections.items():
            if connections.get(name) is not old:
                self._retire(old.session)
        self._connections = connections
        self.poller.configure(
            [(target, connections[target.name].client) for target in config.targets],
            interval_seconds=config.poll_interval_seconds,
            request_timeout_seconds=config.request_timeout_seconds,
            max_concurrency=config.max_concurrency,
            shard=config.shard,
            steady_steps_every_rounds=config.steady_steps_every_rounds,
            settled_poll_every_rounds=config.settled_poll_every_rounds,
        )
        self.collector.configure(
            stale_after_seconds=config.stale_after_seconds,
            poll_interval_seconds=config.poll_interval_seconds,
            cutover_max_lag_seconds={
                target.name: target.cutover_max_lag_seconds for target in config.targets
            },
            metric_filter=config.metric_filter,
        )
        self.metrics.poll_interval.set(config.poll_interval_seconds)
        self.metrics.set_shard(index=config.shard.index, count=config.shard.count)
        self.config = config

    def _connection(self, config: ExporterConfig, target: TargetConfig) -> _Connection:
        """Keep the session and client while nothing they depend on changed."""
        key = config.connection_key(target)
        old = self._connections.get(target.name)
        if old is not None and old.key == key:
            return old
        session = make_session(
            base_url=target.url,
            username=target.username,
            password=target.password,
            timeout_seconds=config.request_timeout_seconds,
            ssl_context=target.ssl_context,
        )
        transport = Transport(
            session=session,
            max_concurrency=config.max_concurrency,
            max_response_bytes=config.max_response_bytes,
            observer=self.metrics.request_observer(target.name),
        )
        client = OmsClient(
            transport=transport,
            api=target.api,
            oms_name=target.name,
            observer=self.metrics.client_observer(target.name),
        )
        return _Connection(session=session, client=client, key=key)

    def _retire(self, session: HttpClient) -> None:
        """Close a replaced session once the round that may still use it has ended."""

        async def close_when_unused() -> None:
            try:
                await self.poller.idle.wait()
            finally:
                await session.close()

        self._spawn(close_when_unused(), name="oms-exporter-session-close")


async def run(
    config: ExporterConfig,
    *,
    loader: Loader | None = None,
    banner: str | None = None,
) -> int:
    """Run the exporter until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    from oms_exporter.httpserver import KEEPALIVE_TIMEOUT_SECONDS, start_site
    from oms_exporter.web import create_app

    setup_logging(level=config.log_level, fmt=config.log_format)
    host, port = parse_listen_address(config.listen_address)
    tune_memory()
    exporter = Exporter(config, loader=loader)
    await exporter.start()
    runner = web.AppRunner(
        create_app(exporter, config.web_config),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
    )
    try:
        await runner.setup()
        ssl_context = config.web_config.ssl_context if config.web_config else None
        try:
            await start_site(runner, host=host, port=port, ssl_context=ssl_context)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.listen_address}: {exc.strerror}"
            ) from None
        scheme = "https" if ssl_context else "http"
        bound = ", ".join(f"{addr[0]}:{addr[1]}" for addr in runner.addresses)
        log.info(
            "listening on %s",
            bound,
            extra={
                "scheme": scheme,
                "oms": ", ".join(target.name for target in config.targets),
                "version": __version__,
            },
        )
        if banner:
            port_bound = runner.addresses[0][1] if runner.addresses else port
            print(banner.format(port=port_bound), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, exporter.request_reload)
        await stop.wait()
        log.info("shutting down")
    finally:
        results = await asyncio.gather(runner.cleanup(), return_exceptions=True)
        await exporter.stop()
        for result in results:
            if isinstance(result, Exception):
                log.error("web server failed while stopping: %s", type(result).__name__)
    return 0
