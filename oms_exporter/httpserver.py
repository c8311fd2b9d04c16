"""Serve the app on TCP so that hostile clients cannot starve Prometheus of its scrape.

aiohttp (3.14) has no header-read timeout and no connection cap: its keep-alive timer
(an hour by default) is the only thing that ever closes a silent connection, so 1,100
idle sockets under systemd's default limit of 1,024 files left no descriptor for a scrape,
and asyncio logged every failed accept(). Here each connection is wrapped:
- a connection must deliver a request's headers within ``header_timeout_seconds`` of
  opening, or of its first byte after an idle keep-alive period, else it is closed;
- open connections are capped below the process's file limit; a new one past the cap
  evicts the oldest connection that is waiting for a request (idle, or trickling
  headers), or is answered 503 and closed when every one is busy with a request;
- asyncio's "socket.accept() out of system resource" is logged at most once a second.
A TLS handshake gets the same timeout; connections still in it are not counted.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

HEADER_TIMEOUT_SECONDS: Final = 5.0
# Longer than a 60 s scrape interval, so Prometheus keeps reusing its connection.
KEEPALIVE_TIMEOUT_SECONDS: Final = 75.0
# An exporter has a few scrapers; each open connection costs memory, whatever the limit.
MAX_CONNECTIONS_CEILING: Final = 4096
# Kept free for OMS sessions, files and the event loop itself: 64 plus 10 % of the limit.
RESERVED_FILES: Final = 64
# When the limit cannot be read, assume systemd's default soft limit.
FALLBACK_FILE_LIMIT: Final = 1024
# An unlimited soft limit still ends at the kernel's nr_open (1048576 by default).
UNLIMITED_FILES: Final = 1 << 20
# How many of the oldest connections are looked at to find an idle one to evict.
EVICTION_SCAN: Final = 64
# The kernel's queue of connections not yet accepted: they hold no file of ours, and a
# burst that overflows it has its SYNs dropped, delaying a scrape by a second or more.
LISTEN_BACKLOG: Final = 1024
ACCEPT_ERROR: Final = "socket.accept() out of system resource"
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 26\r\nConnection: close\r\n\r\ntoo many open connections\n"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How many connections may be open, how many asyncio accepts per wake-up, the deadline."""

    max_connections: int
    accept_batch: int
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS


def file_limit() -> int:
    """The soft RLIMIT_NOFILE this process runs under: what every socket counts against."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return FALLBACK_FILE_LIMIT
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_FILES
    return int(soft) if soft > 0 else FALLBACK_FILE_LIMIT


def limits_for(files: int) -> Limits:
    """Keep sockets below ``files``: a batch is accepted before the cap sees it, and
    evicted sockets close a loop iteration later."""
    batch = min(128, max(8, files // 16))
    spare = files - RESERVED_FILES - files // 10 - 2 * batch
    return Limits(max_connections=max(8, min(MAX_CONNECTIONS_CEILING, spare)), accept_batch=batch)


def _waiting_for_request(handler: RequestHandler) -> bool:
    """True while aiohttp waits for a request's headers: idle, or headers still incomplete.

    aiohttp exposes no such state; its own keep-alive timer reads the same attribute.
    """
    waiter: asyncio.Future[None] | None = getattr(handler, "_waiter", None)
    return waiter is not None and not waiter.done()


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's handler inside, a header deadline around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._handler: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._guard.admit(self):
            self._guard.refused += 1
            transport.write(_REFUSAL)
            transport.close()
            return
        self._handler = self._guard.server()
        self._arm()
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            return
        self._handler.data_received(data)
        if not _waiting_for_request(self._handler):
            self._disarm()  # a request's headers are in: aiohttp takes it from here
        elif self._deadline is None:
            self._arm()  # the first bytes of a request after an idle keep-alive period

    def eof_received(self) -> None:
        # None, as aiohttp answers: the transport then closes once the response is out.
        if self._handler is not None:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard.forget(self)
        if self._handler is not None:
            self._handler.connection_lost(exc)

    def idle(self) -> bool:
        """Waiting for a request: closing it loses no request and no response."""
        return self._handler is not None and _waiting_for_request(self._handler)

    def close(self) -> None:
        """Close as aiohttp's keep-alive timer does; the transport then reports the loss."""
        self._disarm()
        if self._handler is not None:
            self._handler.force_close()
        elif self._transport is not None:
            self._transport.close()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.limits.header_timeout_seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.idle():
            self._guard.timed_out += 1
            self.close()


class ConnectionGuard:
    """The protocol factory: admits connections up to the cap, evicting idle ones first."""

    def __init__(self, server: web.Server, limits: Limits) -> None:
        self.server = server
        self.limits = limits
        # Admitted connections, oldest first: eviction looks at the front.
        self._open: dict[_Connection, None] = {}
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._warned_at: float | None = None

    def __call__(self) -> _Connection:
        return _Connection(self)

    @property
    def open_connections(self) -> int:
        """Admitted connections not yet closed: what the cap counts."""
        return len(self._open)

    def admit(self, connection: _Connection) -> bool:
        """Make room for ``connection``; False when every connection is busy."""
        if len(self._open) >= self.limits.max_connections and not self._evict_one():
            self._warn("connection limit (%d) reached and none idle: refusing new ones")
            return False
        self._open[connection] = None
        return True

    def forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)

    def _evict_one(self) -> bool:
        for candidate in list(islice(self._open, EVICTION_SCAN)):
            del self._open[candidate]
            if candidate.idle():
                candidate.close()
                self.evicted += 1
                self._warn("connection limit (%d) reached: closing the oldest idle connections")
                return True
            self._open[candidate] = None  # busy: to the back, so the next scan skips it
        return False

    def _warn(self, message: str) -> None:
        """One line a minute at most: a flood would otherwise log once per connection."""
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= 60:
            self._warned_at = now
            log.warning(message, self.limits.max_connections)


class AcceptErrorFilter(logging.Filter):
    """Pass one asyncio accept-error record a second: a full file table repeats it nonstop."""

    def __init__(
        self, *, interval_seconds: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = interval_seconds
        self._monotonic = monotonic
        self._last: float | None = None
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR):
            return True
        now = self._monotonic()
        if self._last is not None and now - self._last < self._interval:
            self._suppressed += 1
            return False
        self._last = now
        error = record.exc_info[1] if record.exc_info else None
        # One line: the same traceback each time says nothing the error does not.
        record.msg = f"{ACCEPT_ERROR}: {error}" if error else ACCEPT_ERROR
        if self._suppressed:
            record.msg += f" ({self._suppressed} more since the last such line)"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        self._suppressed = 0
        return True


def limit_accept_error_logs() -> None:
    """Install the filter on asyncio's logger once, whoever configures the handlers."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in asyncio_log.filters):
        asyncio_log.addFilter(AcceptErrorFilter())


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through a ``ConnectionGuard``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        limits: Limits,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=limits.accept_batch)
        assert runner.server is not None  # TCPSite refused a runner that is not set up
        self.guard = ConnectionGuard(runner.server, limits)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, as TCPSite does
        loop = asyncio.get_running_loop()
        handshake = self.guard.limits.header_timeout_seconds if self._ssl_context else None
        self._server = await loop.create_server(
            self.guard,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=handshake,
        )
        # asyncio uses one number for both; keep its batch small and the kernel's queue long.
        for listening in self._server.sockets:
            with socket.fromfd(listening.fileno(), listening.family, listening.type) as sock:
                sock.listen(LISTEN_BACKLOG)
        self._bound_port = self._server.sockets[0].getsockname()[1]


async def start_site(
    runner: web.AppRunner,
    *,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    limits: Limits | None = None,
) -> GuardedSite:
    """Listen on ``host:port`` with the guards above; limits follow the file limit."""
    limit_accept_error_logs()
    chosen = limits or limits_for(file_limit())
    site = GuardedSite(runner, host, port, ssl_context=ssl_context, limits=chosen)
    await site.start()
    log.debug(
        "serving at most %d connections, headers due within %g s",
        chosen.max_connections,
        chosen.header_timeout_seconds,
    )
    return site
