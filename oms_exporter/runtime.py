"""Wire settings to the running parts: sessions, clients, poller, store, collector.

Also owns reloads: a new configuration replaces the running one only once it is valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from oms_exporter.collector import ProjectCollector
from oms_exporter.logsetup import setup_logging
from oms_exporter.oms.client import OmsClient
from oms_exporter.oms.transport import Transport, make_session, make_ssl_context
from oms_exporter.poller import Poller, Target
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.settings import ConfigError, Settings
from oms_exporter.store import Store

log = logging.getLogger(__name__)

# Settings that only take effect at start-up.
_RESTART_ONLY = ("listen_address", "web_config_file")


def _connection_key(settings: Settings) -> tuple[object, ...]:
    """What a client depends on: when none of it changes, keep the client and its caches."""
    return (
        settings.oms_url,
        settings.oms_label,
        settings.oms_username,
        settings.password(),
        settings.api,
        settings.request_timeout,
        settings.max_concurrency,
        settings.max_response_bytes,
        settings.tls_insecure_skip_verify,
        settings.tls_ca_file,
    )


class Exporter:
    """Own every long-lived object; ``start`` and ``stop`` pair their lifetimes."""

    def __init__(
        self,
        settings: Settings,
        *,
        loader: Callable[[], Settings] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = Store()
        self.metrics = SelfMetrics()
        self.poller = Poller(
            store=self.store,
            metrics=self.metrics,
            interval_seconds=settings.poll_interval,
            clock=clock,
        )
        self.collector = ProjectCollector(
            self.store,
            stale_after_seconds=settings.stale_after_seconds,
            poll_interval_seconds=settings.poll_interval,
            clock=clock,
        )
        self._loader = loader
        self._session: aiohttp.ClientSession | None = None
        self._connection: tuple[object, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._apply(self.settings)
        self._task = asyncio.create_task(self.poller.run(), name="oms-exporter-poller")

    async def stop(self) -> None:
        """Cancel polling, then close the sessions: in-flight requests end with them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for closer in list(self._closers):
            closer.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reload(self) -> str | None:
        """Load the configuration again; on error keep the running one and return why."""
        if self._loader is None:
            return "no configuration source to reload"
        try:
            settings = self._loader()
        except ConfigError as exc:
            self.metrics.reload_ok.set(0)
            log.error("reload failed, keeping the running configuration: %s", exc)
            return str(exc)
        for name in _RESTART_ONLY:
            if getattr(settings, name) != getattr(self.settings, name):
                log.warning("%s changed: it takes effect at the next restart", name)
        self._apply(settings)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_timestamp.set_to_current_time()
        log.info(
            "configuration reloaded",
            extra={"projects": len(settings.project_ids), "oms": settings.oms_label},
        )
        return None

    def _apply(self, settings: Settings) -> None:
        if settings.log_level != self.settings.log_level or settings.log_format != (
            self.settings.log_format
        ):
            setup_logging(level=settings.log_level, fmt=settings.log_format)
        self.settings = settings
        name = settings.oms_label
        old = self.poller.targets.get(name)
        connection = _connection_key(settings)
        if old is not None and connection == self._connection:
            client = old.client
        else:
            client = self._new_client(settings)
            self._connection = connection
        self.poller.interval_seconds = settings.poll_interval
        self.poller.set_targets(
            [
                Target(
                    name=name,
                    client=client,
                    project_ids=list(settings.project_ids),
                    max_concurrency=settings.max_concurrency,
                    request_timeout_seconds=settings.request_timeout,
                )
            ]
        )
        self.collector.configure(
            stale_after_seconds=settings.stale_after_seconds,
            poll_interval_seconds=settings.poll_interval,
        )
        self.metrics.poll_interval.set(settings.poll_interval)

    def _new_client(self, settings: Settings) -> OmsClient:
        tls = (
            make_ssl_context(
                ca_file=settings.tls_ca_file,
                insecure_skip_verify=settings.tls_insecure_skip_verify,
            )
            if settings.oms_url.startswith("https:")
            else None
        )
        session = make_session(
            username=settings.oms_username,
            password=settings.password(),
            timeout_seconds=settings.request_timeout,
            max_concurrency=settings.max_concurrency,
            ssl_context=tls,
        )
        if self._session is not None:
            self._retire(self._session, after_seconds=settings.request_timeout + 1)
        self._session = session
        transport = Transport(
            session=session,
            base_url=settings.oms_url,
            max_concurrency=settings.max_concurrency,
            max_response_bytes=settings.max_response_bytes,
            observer=self.metrics.request_observer(settings.oms_label),
        )
        return OmsClient(transport=transport, api=settings.api, oms_name=settings.oms_label)

    def _retire(self, session: aiohttp.ClientSession, *, after_seconds: float) -> None:
        """Close a replaced session once requests already sent on it have ended."""

        async def close_later() -> None:
            try:
                await asyncio.sleep(after_seconds)
            finally:
                await session.close()

        task = asyncio.create_task(close_later())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
