"""HTTP/1.1 keep-alive connections to one OMS: only what the exporter's requests need.

Why not aiohttp's client: the exporter sends one shape of request to one origin, tens of
thousands of times a round, and aiohttp's general client (URL building, header merging,
payload objects, streams, tracing hooks) cost 2.3 times the CPU of this module per
request, which made the exporter cost twice what a bare aiohttp loop costs (bench/).
This is the part of HTTP those requests use, with the parsing left to httptools (the C
parser, llhttp, that uvicorn uses): keep-alive connections, answers sized by
Content-Length, chunked or ending at close, gzip and deflate inflated under a cap, TLS by
asyncio. No proxies, no cookies; redirects are returned, never followed.

Every failure is the OmsError the rest of the client classifies: OmsConnectionError when
OMS cannot be reached or closed the connection before answering, OmsDecodeError for an
answer cut off or not HTTP, OmsAnswerTooLarge past the cap. A connection whose exchange
did not end cleanly (timeout, cancellation, error) is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httptools
from yarl import URL

from oms_exporter import __version__
from oms_exporter.oms.errors import (
    OmsAnswerTooLarge,
    OmsConnectionError,
    OmsDecodeError,
    OmsError,
)

# aiohttp's client limits: 8190 bytes a line or header field; the whole head is bounded.
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 128
# A connection idle this long is not reused: servers close idle keep-alive connections
# (nginx after 75 s, OMS's own after 60 s), and a request sent just as they do is lost.
IDLE_SECONDS: Final = 15.0
_NO_BODY_STATUSES: Final = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Response:
    """An answer read to its end: status, inflated body, and where a redirect points."""

    status: int
    body: bytes
    location: str | None


class _Stale(Exception):
    """A reused connection was closed by the server before any byte of the answer."""


class _Abort(Exception):
    """Raised in a parser callback to stop parsing; the error is kept on the exchange."""


class _Inflater:
    """Inflate gzip or deflate as it arrives, never past ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._zlib: zlib._Decompress | None = (
            zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None
        )
        self._limit = limit

    def feed(self, chunk: bytes, room: int) -> bytes:
        """Inflate ``chunk``; raise OmsAnswerTooLarge once more than ``room`` bytes come."""
        if self._zlib is None:  # deflate: zlib-wrapped as the RFC says, or raw as IIS sends
            raw = bool(chunk) and (chunk[0] & 0x0F) != 8
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        try:
            out = self._zlib.decompress(chunk, room + 1)
        except zlib.error:
            raise OmsDecodeError("answer is not valid gzip or deflate") from None
        if len(out) > room or self._zlib.unconsumed_tail:
            raise OmsAnswerTooLarge(self._limit)
        return out

    def finish(self) -> None:
        if self._zlib is not None and not self._zlib.eof:
            raise OmsDecodeError("answer was cut off")


class _Exchange:
    """One request's answer as the parser reads it."""

    __slots__ = (
        "body",
        "encoding",
        "error",
        "future",
        "head_bytes",
        "headers",
        "headers_done",
        "inflater",
        "keep_alive",
        "limit",
        "location",
        "size",
        "status",
        "until_close",
    )

    def __init__(self, future: asyncio.Future[Response], limit: int) -> None:
        self.future = future
        self.limit = limit
        self.body: list[bytes] = []
        self.size = 0
        self.head_bytes = 0
        self.headers = 0
        self.headers_done = False
        self.status = 0
        self.encoding = ""
        self.location: str | None = None
        self.inflater: _Inflater | None = None
        self.until_close = False  # no Content-Length, not chunked: the body ends at close
        self.keep_alive = False
        self.error: OmsError | None = None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._exchange: _Exchange | None = None
        self._length: int | None = None
        self._chunked = False
        self.closed = False
        self.idle_since = 0.0
        self.used = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None or exchange.future.done():  # bytes nobody asked for
            self.close()
            return
        if not exchange.headers_done:
            exchange.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            self._fail(exchange.error or OmsDecodeError("answer is not valid HTTP"))
        except httptools.HttpParserUpgrade:
            self._fail(OmsDecodeError("answer switches protocols"))
        except httptools.HttpParserError:
            self._fail(OmsDecodeError("answer is not valid HTTP"))
        else:
            if not exchange.headers_done and exchange.head_bytes > MAX_HEAD_BYTES:
                self._fail(OmsDecodeError("answer headers are too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self._exchange
        if exchange is None or exchange.future.done():
            return
        if exchange.headers_done and exchange.until_close:
            try:
                self._complete(exchange)
            except OmsError as error:
                self._fail(error)
        elif exchange.head_bytes:
            self._fail(OmsDecodeError("answer was cut off"))
        elif self.used:
            exchange.future.set_exception(_Stale())
        else:
            detail = " ".join(str(exc).split())[:160] if exc else ""
            self._fail(OmsConnectionError(f"cannot reach OMS: {detail or 'connection closed'}"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._length = None
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self._current()
        exchange.headers += 1
        if exchange.headers > MAX_HEADERS:
            self._abort(exchange, OmsDecodeError("answer has too many headers"))
        key = name.lower()
        if key == b"content-length":
            self._length = int(value) if value.strip().isdigit() else None
        elif key == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif key == b"content-encoding":
            exchange.encoding = value.decode("latin-1").strip().lower()
        elif key == b"location":
            exchange.location = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        exchange = self._current()
        exchange.headers_done = True
        exchange.status = status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim answer, the real one follows
            exchange.headers_done = False
            exchange.headers = 0
            exchange.encoding = ""
            return
        if self._length is not None and self._length > exchange.limit:
            self._abort(exchange, OmsAnswerTooLarge(exchange.limit))
        exchange.until_close = (
            self._length is None and not self._chunked and status not in _NO_BODY_STATUSES
        )
        if exchange.encoding in ("gzip", "x-gzip", "deflate"):
            exchange.inflater = _Inflater(exchange.encoding, exchange.limit)

    def on_body(self, chunk: bytes) -> None:
        exchange = self._current()
        try:
            if exchange.inflater is not None:
                chunk = exchange.inflater.feed(chunk, exchange.limit - exchange.size)
            exchange.size += len(chunk)
            if exchange.size > exchange.limit:
                raise OmsAnswerTooLarge(exchange.limit)
        except OmsError as error:
            self._abort(exchange, error)
        exchange.body.append(chunk)

    def on_message_complete(self) -> None:
        exchange = self._current()
        if not exchange.headers_done:  # the end of a 1xx
            return
        exchange.keep_alive = self._parser.should_keep_alive() and not exchange.until_close
        try:
            self._complete(exchange)
        except OmsError as error:
            self._abort(exchange, error)

    # -- the exchange ----------------------------------------------------------------------

    async def send(self, request: bytes, limit: int) -> Response:
        """Write one request and wait for its whole answer."""
        assert self._transport is not None, "send before connection_made"
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        exchange = self._exchange = _Exchange(future, limit)
        clean = False
        try:
            self._transport.write(request)
            response = await future
            clean = exchange.keep_alive
            return response
        finally:
            self._exchange = None
            if not clean:  # failed, timed out, cancelled, or the server will close
                self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _current(self) -> _Exchange:
        exchange = self._exchange
        if exchange is None or exchange.future.done():
            raise _Abort
        return exchange

    def _complete(self, exchange: _Exchange) -> None:
        if exchange.inflater is not None:
            exchange.inflater.finish()
        body = exchange.body[0] if len(exchange.body) == 1 else b"".join(exchange.body)
        exchange.future.set_result(Response(exchange.status, body, exchange.location))

    def _abort(self, exchange: _Exchange, error: OmsError) -> None:
        # Without its traceback: the frames it holds keep megabytes of inflated body alive.
        exchange.error = error.with_traceback(None)
        raise _Abort

    def _fail(self, error: OmsError) -> None:
        exchange = self._exchange
        if exchange is not None and not exchange.future.done():
            exchange.future.set_exception(error)
        self.close()


class HttpClient:
    """Connections to one origin, reused while they are fresh; ``close`` ends them all.

    Concurrency is the caller's to bound (Transport's semaphore): every request either
    takes an idle connection or opens one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        timeout_seconds: float,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = URL(base_url)
        self._base_url = base_url.rstrip("/")
        self._host = url.raw_host or ""
        default_port = 443 if url.scheme == "https" else 80
        self._port = url.port or default_port
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._prefix = url.raw_path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        fixed = {
            "Host": host if self._port == default_port else f"{host}:{self._port}",
            "User-Agent": f"oms-exporter/{__version__}",
            "Accept-Encoding": "gzip, deflate",
            **headers,
        }
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._clock = clock
        self._timeout = timeout_seconds
        self._closed = False

    async def request(
        self, method: str, path: str, *, body: bytes | None = None, limit: int
    ) -> Response:
        """Send one request, on a fresh connection again if a reused one had gone stale.

        Raise TimeoutError when the whole exchange, connecting included, took too long.
        """
        request = self._encode(method, path, body)
        async with asyncio.timeout(self._timeout):
            return await self._send(request, limit)

    async def _send(self, request: bytes, limit: int) -> Response:
        while True:
            connection = await self._acquire()
            try:
                response = await connection.send(request, limit)
            except _Stale:
                continue  # it was reused: the server closed it first; a new one is tried
            if self._closed:  # closed while this answer was on its way
                connection.close()
            elif not connection.closed:
                connection.idle_since = self._clock()
                self._idle.append(connection)
            return response

    def url_for(self, path: str) -> URL:
        """The whole URL a request for ``path`` goes to (for naming a redirect's target)."""
        return URL(self._base_url + path)

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when their answer ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _encode(self, method: str, path: str, body: bytes | None) -> bytes:
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._head}"
        if body is None:
            return (head + "\r\n").encode("latin-1")
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body

    async def _acquire(self) -> _Connection:
        fresh_after = self._clock() - IDLE_SECONDS
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.idle_since >= fresh_after:
                connection.used = True
                return connection
            connection.close()
        if self._closed:
            raise OmsConnectionError("cannot reach OMS: the client is closed")
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise OmsConnectionError(f"cannot reach OMS: {detail}") from None
        return connection
