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
from oms_exporter.settings import ConfigError, OmsTarget, Settings
from oms_exporter.sharding import Shard, resolve_shard
from oms_exporter.store import Store

log = logging.getLogger(__name__)

# Settings that only take effect at start-up.
_RESTART_ONLY = ("listen_address", "web_config_file")


def _connection_key(settings: Settings, target: OmsTarget) -> tuple[object, ...]:
    """What a client depends on: when none of it changes, keep the client and its caches."""
    return (
        target.url,
        target.username,
        target.read_password(),
        target.api,
        target.tls_insecure_skip_verify,
        target.tls_ca_file,
        settings.request_timeout,
        settings.max_concurrency,
        settings.max_response_bytes,
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
        # Per OMS target name: its session and what the session was built from.
        self._sessions: dict[str, tuple[aiohttp.ClientSession, tuple[object, ...]]] = {}
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
        for session, _ in self._sessions.values():
            await session.close()
        self._sessions.clear()

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
            extra={"oms": settings.oms_label},
        )
        return None

    def _apply(self, settings: Settings) -> None:
        if settings.log_level != self.settings.log_level or settings.log_format != (
            self.settings.log_format
        ):
            setup_logging(level=settings.log_level, fmt=settings.log_format)
        shard = resolve_shard(index=settings.shard_index, count=settings.shard_count)
        self.settings = settings
        targets = [self._target(settings, target, shard) for target in settings.oms_targets()]
        for name in set(self._sessions) - {target.name for target in targets}:
            self._retire(self._sessions.pop(name)[0], after_seconds=settings.request_timeout + 1)
        self.poller.interval_seconds = settings.poll_interval
        self.poller.set_targets(targets)
        self.collector.configure(
            stale_after_seconds=settings.stale_after_seconds,
            poll_interval_seconds=settings.poll_interval,
        )
        self.metrics.poll_interval.set(settings.poll_interval)
        self.metrics.set_shard(index=shard.index, count=shard.count)

    def _target(self, settings: Settings, target: OmsTarget, shard: Shard) -> Target:
        name = target.label
        old = self.poller.targets.get(name)
        key = _connection_key(settings, target)
        if old is not None and name in self._sessions and self._sessions[name][1] == key:
            client = old.client
        else:
            client = self._new_client(settings, target, key)
        return Target(
            name=name,
            client=client,
            static_ids=list(target.project_ids),
            max_concurrency=settings.max_concurrency,
            request_timeout_seconds=settings.request_timeout,
            discovery=target.discovery if target.discovers else None,
            step_details=target.step_details,
            shard=shard,
        )

    def _new_client(
        self, settings: Settings, target: OmsTarget, key: tuple[object, ...]
    ) -> OmsClient:
        tls = (
            make_ssl_context(
                ca_file=target.tls_ca_file,
                insecure_skip_verify=target.tls_insecure_skip_verify,
            )
            if target.url.startswith("https:")
            else None
        )
        session = make_session(
            username=target.username,
            password=target.read_password(),
            timeout_seconds=settings.request_timeout,
            max_concurrency=settings.max_concurrency,
            ssl_context=tls,
        )
        if target.label in self._sessions:
            old_session = self._sessions[target.label][0]
            self._retire(old_session, after_seconds=settings.request_timeout + 1)
        self._sessions[target.label] = (session, key)
        transport = Transport(
            session=session,
            base_url=target.url,
            max_concurrency=settings.max_concurrency,
            max_response_bytes=settings.max_response_bytes,
            observer=self.metrics.request_observer(target.label),
        )
        return OmsClient(transport=transport, api=target.api, oms_name=target.label)

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
