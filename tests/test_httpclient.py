"""The exporter's own HTTP/1.1 client against a scripted TCP server on 127.0.0.1.

Each test scripts the bytes a server sends for each request it reads, so what a real
server does at the edges (keep-alive closed under a request, chunks, bodies ending at
close, interim answers, junk after an answer) is sent for real over a socket.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from oms_exporter.oms.errors import OmsAnswerTooLarge, OmsConnectionError, OmsDecodeError
from oms_exporter.oms.httpclient import IDLE_SECONDS, MAX_HEAD_BYTES, HttpClient
from oms_exporter.oms.transport import make_ssl_context

CLOSE = b""  # in a script: close the connection instead of answering
THEN_CLOSE = b"\0then-close"  # at the end of an answer: close the connection after it


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), head.encode()) + body


@dataclass
class Scripted:
    """Answers the n-th request it reads (over all connections) with script[n]."""

    script: list[bytes]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    port: int = 0
    hold: asyncio.Event | None = None  # when set, answers wait for it
    asked: asyncio.Event = field(default_factory=asyncio.Event)  # a request was read
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                self.asked.set()
                answer = self.script[len(self.requests) - 1]
                if answer == CLOSE:
                    break
                if self.hold is not None:
                    await self.hold.wait()
                writer.write(answer.removesuffix(THEN_CLOSE))
                await writer.drain()
                if answer.endswith(THEN_CLOSE):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            self.client_closed.set()
        finally:
            writer.close()


Start = Callable[..., Awaitable[Scripted]]


@pytest.fixture
async def scripted() -> AsyncIterator[Start]:
    """Start scripted servers on 127.0.0.1; all are closed after the test."""
    servers: list[asyncio.Server] = []

    async def start(script: list[bytes], tls: ssl.SSLContext | None = None) -> Scripted:
        server = Scripted(script)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
        servers.append(listening)
        server.port = listening.sockets[0].getsockname()[1]
        return server

    yield start
    for listening in servers:
        listening.close()
        await listening.wait_closed()


Now = list[float]


def client_for(server: Scripted, *, now: Now | None = None, timeout: float = 10.0) -> HttpClient:
    """A client of the server under the path prefix /oms, on an injected clock if given."""
    return HttpClient(
        f"http://127.0.0.1:{server.port}/oms",
        headers={"Authorization": "Basic eDp5"},
        timeout_seconds=timeout,
        clock=(lambda: now[0]) if now is not None else time.monotonic,
    )


async def test_requests_share_one_keep_alive_connection_and_carry_the_head(scripted: Start):
    server = await scripted([ok(b'{"a":1}'), ok(b'{"b":2}')])
    client = client_for(server)
    first = await client.request("POST", "/api/v2?Action=X", body=b'{"id":"p1"}', limit=1024)
    second = await client.request("GET", "/api/v2?Action=Y", limit=1024)
    await client.close()
    assert (first.status, first.body, second.body) == (200, b'{"a":1}', b'{"b":2}')
    assert server.connections == 1
    post = server.requests[0]
    assert post.startswith(b"POST /oms/api/v2?Action=X HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in post
    assert b"Authorization: Basic eDp5\r\n" in post
    assert b"Content-Length: 11\r\n" in post
    assert post.endswith(b'\r\n\r\n{"id":"p1"}')
    assert b"Content-Length" not in server.requests[1]


async def test_chunked_and_until_close_bodies_are_read_whole(scripted: Start):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe whole body" + THEN_CLOSE
    server = await scripted([chunked, until_close, ok(b"after")])
    client = client_for(server)
    assert (await client.request("GET", "/a", limit=100)).body == b"abcde"
    assert (await client.request("GET", "/b", limit=100)).body == b"the whole body"
    assert (await client.request("GET", "/c", limit=100)).body == b"after"
    await client.close()
    assert server.connections == 2  # the body that ended at close took its connection


async def test_connection_close_is_honoured(scripted: Start):
    server = await scripted([ok(b"1", "Connection: close"), ok(b"2")])
    client = client_for(server)
    await client.request("GET", "/a", limit=100)
    assert (await client.request("GET", "/b", limit=100)).body == b"2"
    await client.close()
    assert server.connections == 2


async def test_a_reused_connection_closed_under_a_request_is_retried_once_on_a_new_one(
    scripted: Start,
):
    """The keep-alive race: the server closed the idle connection as the request went."""
    server = await scripted([ok(b"1"), CLOSE, ok(b"2")])
    client = client_for(server)
    await client.request("GET", "/a", limit=100)
    assert (await client.request("GET", "/b", limit=100)).body == b"2"
    await client.close()
    assert server.connections == 2
    assert len(server.requests) == 3


async def test_a_new_connection_closed_without_an_answer_is_a_connection_error(scripted: Start):
    server = await scripted([CLOSE, ok(b"never")])
    client = client_for(server)
    with pytest.raises(OmsConnectionError, match=r"^cannot reach OMS: "):
        await client.request("GET", "/a", limit=100)
    await client.close()
    assert len(server.requests) == 1  # not retried: nothing says a second try would do better


async def test_an_idle_connection_past_its_age_is_not_reused(scripted: Start):
    server = await scripted([ok(b"1"), ok(b"2"), ok(b"3")])
    now = [1000.0]
    client = client_for(server, now=now)
    await client.request("GET", "/a", limit=100)
    now[0] += IDLE_SECONDS - 1
    await client.request("GET", "/b", limit=100)
    assert server.connections == 1
    now[0] += IDLE_SECONDS + 1
    await client.request("GET", "/c", limit=100)
    await client.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" + THEN_CLOSE,
            OmsDecodeError,
            "cut off",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES, OmsDecodeError, "headers are too"),
        (b"SMTP ready\r\n\r\n", OmsDecodeError, "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", OmsAnswerTooLarge, "100-byte"),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 101 + THEN_CLOSE, OmsAnswerTooLarge, "100"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 7\r\n\r\nnotgzip",
            OmsDecodeError,
            "not valid gzip",
        ),
    ],
    ids=["cut-off", "huge-head", "not-http", "announced-too-large", "too-large", "bad-gzip"],
)
async def test_broken_answers_are_classified_and_their_connection_dropped(
    scripted: Start, answer: bytes, error: type[Exception], message: str
):
    server = await scripted([answer, ok(b"next")])
    client = client_for(server)
    with pytest.raises(error, match=message):
        await client.request("GET", "/a", limit=100)
    assert (await client.request("GET", "/b", limit=100)).body == b"next"
    await client.close()
    assert server.connections == 2


@pytest.mark.parametrize("wbits", [31, 15, -15], ids=["gzip", "deflate-zlib", "deflate-raw"])
async def test_compressed_answers_are_inflated_under_the_cap(scripted: Start, wbits: int):
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    body = packer.compress(b"x" * 5000) + packer.flush()
    encoding = "gzip" if wbits == 31 else "deflate"
    answer = ok(body, f"Content-Encoding: {encoding}")
    server = await scripted([answer, answer])
    client = client_for(server)
    assert (await client.request("GET", "/a", limit=5000)).body == b"x" * 5000
    with pytest.raises(OmsAnswerTooLarge):
        await client.request("GET", "/b", limit=4999)
    await client.close()


async def test_an_interim_answer_is_skipped_and_junk_after_an_answer_drops_the_connection(
    scripted: Start,
):
    server = await scripted([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"real") + b"junk", ok(b"2")])
    client = client_for(server)
    assert (await client.request("GET", "/a", limit=100)).body == b"real"
    assert (await client.request("GET", "/b", limit=100)).body == b"2"
    await client.close()
    assert server.connections == 2


async def test_a_redirect_is_returned_with_its_location(scripted: Start):
    answer = b"HTTP/1.1 302 Found\r\nLocation: /sso/login\r\nContent-Length: 0\r\n\r\n"
    server = await scripted([answer])
    client = client_for(server)
    response = await client.request("GET", "/a", limit=100)
    await client.close()
    assert (response.status, response.location) == (302, "/sso/login")
    assert str(client.url_for("/a")) == f"http://127.0.0.1:{server.port}/oms/a"


async def test_a_timed_out_exchange_closes_its_connection(scripted: Start):
    server = await scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"])  # no body
    client = client_for(server, timeout=0.2)
    with pytest.raises(TimeoutError):
        await client.request("GET", "/a", limit=100)
    await client.close()
    await asyncio.wait_for(server.client_closed.wait(), 10)  # once its read wakes up
    assert server.closed_by_client == 1


async def test_https_is_verified_against_the_configured_ca(
    scripted: Start, certificate: tuple[Path, Path]
):
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = await scripted([ok(b"1"), ok(b"2"), ok(b"3")], tls)
    url = f"https://127.0.0.1:{server.port}"

    def client(context: ssl.SSLContext | None) -> HttpClient:
        return HttpClient(url, headers={}, timeout_seconds=10.0, ssl_context=context)

    trusting = client(make_ssl_context(cadata=cert.read_text(), insecure_skip_verify=False))
    assert (await trusting.request("GET", "/a", limit=100)).body == b"1"
    assert (await trusting.request("GET", "/b", limit=100)).body == b"2"
    await trusting.close()
    assert server.connections == 1  # kept alive over TLS too
    with pytest.raises(OmsConnectionError, match="certificate verify failed"):
        await client(None).request("GET", "/c", limit=100)  # the system CAs: not trusted
    skipping = client(make_ssl_context(cadata=None, insecure_skip_verify=True))
    assert (await skipping.request("GET", "/c", limit=100)).body == b"3"
    await skipping.close()


async def test_a_connection_in_use_when_the_client_closes_is_closed_after_its_answer(
    scripted: Start,
):
    server = await scripted([ok(b"1"), ok(b"2")])
    server.hold = asyncio.Event()
    client = client_for(server)
    answer = asyncio.ensure_future(client.request("GET", "/a", limit=100))
    await asyncio.wait_for(server.asked.wait(), 10)  # the request is out; its answer held
    await client.close()
    server.hold.set()
    assert (await answer).body == b"1"
    await asyncio.wait_for(server.client_closed.wait(), 10)
    assert server.closed_by_client == 1
