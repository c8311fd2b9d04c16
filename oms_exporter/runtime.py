"""Wire settings to the running parts: sessions, clients, poller, store, collector."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from oms_exporter.collector import ProjectCollector
from oms_exporter.oms.client import OmsClient
from oms_exporter.oms.transport import Transport, make_session, make_ssl_context
from oms_exporter.poller import Poller, Target
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.settings import Settings
from oms_exporter.store import Store

log = logging.getLogger(__name__)


class Exporter:
    """Own every long-lived object; ``start`` and ``stop`` pair their lifetimes."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
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
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._apply(self.settings)
        self._task = asyncio.create_task(self.poller.run(), name="oms-exporter-poller")

    async def stop(self) -> None:
        """Cancel polling, then close the session: in-flight requests end with it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        session = make_session(
            username=settings.oms_username,
            password=settings.password(),
            timeout_seconds=settings.request_timeout,
            max_concurrency=settings.max_concurrency,
            ssl_context=make_ssl_context(
                ca_file=settings.tls_ca_file,
                insecure_skip_verify=settings.tls_insecure_skip_verify,
            )
            if settings.oms_url.startswith("https:")
            else None,
        )
        old_session, self._session = self._session, session
        name = settings.oms_label
        transport = Transport(
            session=session,
            base_url=settings.oms_url,
            max_concurrency=settings.max_concurrency,
            max_response_bytes=settings.max_response_bytes,
            observer=self.metrics.request_observer(name),
        )
        client = OmsClient(transport=transport, api=settings.api, oms_name=name)
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
        if old_session is not None:
            # Requests of the old session may still be in flight in this round.
            asyncio.get_running_loop().call_later(
                settings.request_timeout + 1, lambda: asyncio.ensure_future(old_session.close())
            )
