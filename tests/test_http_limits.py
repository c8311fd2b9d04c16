"""Hostile clients against the HTTP face: silent and trickling connections, floods, many scrapes.

Real HTTP on 127.0.0.1 against the real app (``create_app``) served by ``start_site``, or
a whole exporter process under a low file limit. Every connection and process a test
opens is closed by it or its fixture, and every wait has a limit.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import queue
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families as parse_text

from oms_exporter import scrapes as oms_scrapes
from oms_exporter import web as oms_web
from oms_exporter.config import ExporterConfig, load_config
from oms_exporter.httpserver import (
    ACCEPT_ERROR,
    KEEPALIVE_TIMEOUT_SECONDS,
    AcceptErrorFilter,
    GuardedSite,
    Limits,
    limit_accept_error_logs,
    limits_for,
    start_site,
)
from oms_exporter.model import STEP_STATUSES, Api, Checkpoint, Kind, ProjectProgress, Step
from oms_exporter.runtime import Exporter
from oms_exporter.settings import ConfigError
from oms_exporter.web import RENDERS_KEY, SharedRenders, create_app, gzip_accepted
from tests.processes import get, stop

NOW = time.time()
OMS = "oms"
LIMIT_SECONDS = 10.0


def progress(project_id: str) -> ProjectProgress:
    """A migration with eight steps: about 2 KB of exposition per project."""
    steps = tuple(Step(f"STEP_{i}", STEP_STATUSES[i % 6], 0.5) for i in range(8))
    return ProjectProgress(
        project_id=project_id,
        api=Api.V4,
        kind=Kind.MIGRATION,
        status="RUNNING",
        raw_status="RUNNING",
        alarm_level="HIGH",
        current_step="FULL_TRANSFER",
        features={"struct": True, "full": True, "incr": True, "reverse_incr": False},
        struct_progress_ratio=1.0,
        full_progress_ratio=0.37,
        checkpoints=(Checkpoint("forward", NOW - 42, str(int(NOW - 42))),),
        steps=steps,
    )


def exporter_with(projects: int, *, loader: Callable[[], ExporterConfig] | None = None) -> Exporter:
    """An exporter whose store holds ``projects`` polled projects; it polls nothing."""
    ids = [f"np_{i:05d}" for i in range(projects)]
    config = load_config({"oms_url": "http://127.0.0.1:1", "oms_name": OMS, "project_ids": "a"})
    exporter = Exporter(config, loader=loader)
    exporter.store.set_projects(OMS, ids)
    for project_id in ids:
        exporter.store.record_success(OMS, project_id, progress(project_id), now=NOW)
    return exporter


@dataclass
class Served:
    app: web.Application
    runner: web.AppRunner
    site: GuardedSite
    port: int
    clients: list[Client]

    async def connect(
        self, *, receive_buffer: int | None = None, tls: ssl.SSLContext | None = None
    ) -> Client:
        """A client socket; a small receive buffer makes a client that does not read stall."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        limit = 1024 if receive_buffer is not None else 2**16
        hostname = "127.0.0.1" if tls else None
        reader, writer = await asyncio.open_connection(
            sock=sock, limit=limit, ssl=tls, server_hostname=hostname
        )
        client = Client(reader, writer)
        self.clients.append(client)
        return client


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def send(self, method: str, path: str, *headers: str) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
        self.writer.write("\r\n".join(lines).encode())

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read one response: status, headers (lower-cased names), body (chunks joined)."""
        async with asyncio.timeout(LIMIT_SECONDS):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode().split("\r\n")
            headers = {}
            for line in filter(None, lines):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding") == "chunked":
                body = bytearray()
                while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                    body += await self.reader.readexactly(size + 2)
                    del body[-2:]
                await self.reader.readexactly(2)
            else:
                body = bytearray(await self.reader.readexactly(int(headers["content-length"])))
            return int(status_line.split()[1]), headers, bytes(body)

    async def closed_by_server(self, *, within_seconds: float) -> bool:
        """True when the server closes the connection in time without answering anything."""
        try:
            async with asyncio.timeout(within_seconds):
                return await self.reader.read(1) == b""
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.transport.abort()


ServeFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """Serve the real app on 127.0.0.1; everything started is stopped at the test's end."""
    started: list[Served] = []
    exporters: list[Exporter] = []

    async def start(
        exporter: Exporter,
        *,
        limits: Limits | None = None,
        renders: SharedRenders | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Served:
        exporters.append(exporter)
        app = create_app(exporter)
        if renders is not None:
            app[RENDERS_KEY] = renders
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS
        )
        await runner.setup()
        site = await start_site(
            runner, host="127.0.0.1", port=0, ssl_context=ssl_context, limits=limits
        )
        served = Served(app, runner, site, site.port, clients=[])
        started.append(served)
        return served

    yield start
    for served in started:
        for client in served.clients:
            client.close()
        await served.runner.cleanup()
    for exporter in exporters:
        await exporter.stop()


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait for a state the server reaches; passing the limit fails the test."""
    async with asyncio.timeout(LIMIT_SECONDS):
        while not predicate():  # noqa: ASYNC110 - the states waited for have no event
            await asyncio.sleep(0.01)


FAST = Limits(max_connections=100, accept_batch=16, header_timeout_seconds=0.3)


# --- slow clients ----------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    serve: ServeFactory,
):
    served = await serve(exporter_with(1), limits=FAST)
    client = await served.connect()
    assert await client.closed_by_server(within_seconds=3)
    assert served.site.guard.timed_out == 1


async def test_trickled_headers_are_cut_off_at_the_header_timeout(serve: ServeFactory):
    """Slowloris: a header line every 50 ms never completes a request, so it is dropped."""
    served = await serve(exporter_with(1), limits=FAST)
    client = await served.connect()
    client.writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    closed = False
    for line in range(60):  # 3 s of trickling at most
        with suppress(ConnectionError):
            client.writer.write(f"X-Slow-{line}: y\r\n".encode())
        if await client.closed_by_server(within_seconds=0.05):
            closed = True
            break
    assert closed, "a trickling client kept its connection"
    assert time.monotonic() - started < 2
    assert served.site.guard.timed_out == 1


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(
    serve: ServeFactory,
):
    """The deadline covers headers, not the wait between Prometheus's scrapes."""
    served = await serve(exporter_with(1), limits=FAST)
    client = await served.connect()
    client.send("GET", "/metrics")
    assert (await client.response())[0] == 200
    assert not await client.closed_by_server(within_seconds=0.6)  # twice the header timeout
    client.send("GET", "/metrics")
    assert (await client.response())[0] == 200
    assert served.site.guard.timed_out == 0


async def test_over_tls_the_handshake_and_then_the_headers_are_due_in_time(
    serve: ServeFactory, certificate: tuple[Path, Path]
):
    """A TCP connection that never says hello, or says it and nothing more, is closed."""
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    served = await serve(exporter_with(1), limits=FAST, ssl_context=server_context)
    no_hello = await served.connect()
    assert await no_hello.closed_by_server(within_seconds=3)
    silent = await served.connect(tls=ssl.create_default_context(cafile=str(cert)))
    assert await silent.closed_by_server(within_seconds=3)
    assert served.site.guard.timed_out == 1  # the handshake timeout is asyncio's own
    scraper = await served.connect(tls=ssl.create_default_context(cafile=str(cert)))
    scraper.send("GET", "/metrics")
    assert (await scraper.response())[0] == 200


# --- connection cap ---------------------------------------------------------------------------


async def test_past_the_cap_the_oldest_idle_connection_makes_room_for_a_scrape(
    serve: ServeFactory,
):
    limits = Limits(max_connections=3, accept_batch=16, header_timeout_seconds=30)
    served = await serve(exporter_with(1), limits=limits)
    guard = served.site.guard
    idle = [await served.connect() for _ in range(3)]
    await wait_until(lambda: guard.open_connections == 3)
    scraper = await served.connect()
    scraper.send("GET", "/metrics")
    assert (await scraper.response())[0] == 200
    assert await idle[0].closed_by_server(within_seconds=3)
    assert not await idle[1].closed_by_server(within_seconds=0.05)
    assert (guard.evicted, guard.refused, guard.open_connections) == (1, 0, 3)


async def test_when_every_connection_is_busy_a_new_one_is_refused_with_503(
    serve: ServeFactory,
):
    """Two reloads hang in the loader: both connections are busy, a third one is turned away."""
    entered, release = threading.Event(), threading.Event()

    def hanging_loader() -> ExporterConfig:
        entered.set()
        release.wait(LIMIT_SECONDS)
        raise ConfigError("released by the test")

    limits = Limits(max_connections=2, accept_batch=16, header_timeout_seconds=30)
    served = await serve(exporter_with(1, loader=hanging_loader), limits=limits)
    try:
        busy = [await served.connect() for _ in range(2)]
        for client in busy:
            client.send("POST", "/-/reload", "Content-Length: 0")
        server = served.runner.server
        assert server is not None
        await wait_until(lambda: entered.is_set() and server.requests_count == 2)
        turned_away = await served.connect()
        status, _headers, body = await turned_away.response()
        assert (status, body) == (503, b"too many open connections\n")
        assert await turned_away.closed_by_server(within_seconds=3)
        assert served.site.guard.refused == 1
    finally:
        release.set()
    for client in busy:  # the busy ones were left alone and get their answer
        assert (await client.response())[0] == 500


def test_the_cap_stays_below_the_file_limit_with_room_for_oms_and_a_backlog():
    for files in (256, 1024, 8192, 65536, 1 << 20):
        limits = limits_for(files)
        assert limits.max_connections + 2 * limits.accept_batch + 64 + files // 10 <= files
        assert limits.max_connections >= 100
    assert limits_for(1024).max_connections > 700
    assert limits_for(8192).max_connections == 4096  # the ceiling: memory, not files


# --- accept errors ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def accept_filter() -> Iterator[tuple[AcceptErrorFilter, FakeClock]]:
    """A filter with a clock the test moves, on asyncio's logger for this test only."""
    clock = FakeClock()
    limiter = AcceptErrorFilter(monotonic=clock)
    asyncio_log = logging.getLogger("asyncio")
    saved = list(asyncio_log.filters)
    asyncio_log.filters[:] = [limiter]
    yield limiter, clock
    asyncio_log.filters[:] = saved


async def test_accept_errors_are_logged_at_most_once_a_second(
    accept_filter: tuple[AcceptErrorFilter, FakeClock], caplog: pytest.LogCaptureFixture
):
    """Through asyncio's own exception handler, as a full file table makes it report."""
    _limiter, clock = accept_filter
    loop = asyncio.get_running_loop()
    error = OSError(24, "Too many open files")
    caplog.set_level(logging.ERROR, logger="asyncio")
    for step in range(3000):  # 3,000 failed accepts over 2.999 s
        clock.now = step / 1000
        loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": error})
    loop.call_exception_handler({"message": "something else", "exception": error})
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"{ACCEPT_ERROR}: [Errno 24] Too many open files",
        f"{ACCEPT_ERROR}: [Errno 24] Too many open files (999 more since the last such line)",
        f"{ACCEPT_ERROR}: [Errno 24] Too many open files (999 more since the last such line)",
        "something else",
    ]
    assert all(record.exc_info is None for record in caplog.records[:3])


def test_the_accept_error_filter_is_installed_once():
    asyncio_log = logging.getLogger("asyncio")
    saved = list(asyncio_log.filters)
    try:
        limit_accept_error_logs()
        limit_accept_error_logs()
        assert sum(isinstance(f, AcceptErrorFilter) for f in asyncio_log.filters) == 1
    finally:
        asyncio_log.filters[:] = saved


# --- concurrent scrapes -----------------------------------------------------------------------


def decoded(headers: dict[str, str], body: bytes) -> str:
    return (gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body).decode()


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_concurrent_scrapes_share_one_render(serve: ServeFactory, encoding: str):
    """200 scrapes of a 200-project exporter at once: one render, byte for byte the same."""
    renders = SharedRenders(window_seconds=60)  # slow machines included
    served = await serve(exporter_with(200), renders=renders)
    clients = [await served.connect() for _ in range(200)]
    for client in clients:
        client.send("GET", "/metrics", f"Accept-Encoding: {encoding}")
    answers = await asyncio.gather(*(client.response() for client in clients))
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert renders.renders == 1
    headers, body = answers[0][1], answers[0][2]
    assert headers.get("content-encoding") == ("gzip" if encoding == "gzip" else None)
    text = decoded(headers, body)
    assert len(text) > 300_000
    assert {f.name for f in parse_text(text)} >= {"oms_project_up", "oms_exporter_build_info"}
    assert renders.in_flight == 0  # the last reader let the render go


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_head_says_the_length_and_sends_no_body(serve: ServeFactory, encoding: str):
    """HEAD /metrics: the length a GET would send, and not a byte of body, so the next
    request on the connection is read from where it starts."""
    served = await serve(exporter_with(300))
    client = await served.connect()
    client.send("HEAD", "/metrics", f"Accept-Encoding: {encoding}")
    async with asyncio.timeout(LIMIT_SECONDS):
        head = (await client.reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith("HTTP/1.1 200")
    length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
    client.send("GET", "/metrics", f"Accept-Encoding: {encoding}")
    status, _headers, body = await client.response()
    assert status == 200
    assert abs(len(body) - length) < 0.01 * length  # only the lag values differ


async def test_scrapes_that_do_not_overlap_render_afresh(serve: ServeFactory):
    """The lag is computed at scrape time: a finished render is never served again."""
    renders = SharedRenders(window_seconds=60)
    served = await serve(exporter_with(2), renders=renders)
    client = await served.connect()
    for _ in range(3):
        client.send("GET", "/metrics")
        assert (await client.response())[0] == 200
    assert renders.renders == 3


# A body larger than what the kernel buffers for a client that does not read (a few MB).
STALLING_PROJECTS = 4000


async def stalled_scrape(served: Served) -> Client:
    """A scrape whose client does not read: its render stays in flight."""
    client = await served.connect(receive_buffer=4096)
    client.send("GET", "/metrics")
    await wait_until(lambda: served.app[RENDERS_KEY].in_flight == 1)
    return client


async def test_a_render_older_than_the_window_takes_no_newcomers(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
):
    """A client that never reads must not freeze the body every later scrape gets."""
    monkeypatch.setattr(oms_scrapes, "SHARE_MAX_BYTES", 1 << 30)  # only the window counts here
    clock = FakeClock()
    renders = SharedRenders(window_seconds=1.0, monotonic=clock)
    served = await serve(exporter_with(STALLING_PROJECTS), renders=renders)
    await stalled_scrape(served)
    clock.now = 0.5
    joining = await served.connect()
    joining.send("GET", "/metrics", "Accept-Encoding: identity")
    assert (await joining.response())[0] == 200
    assert renders.renders == 1
    clock.now = 1.0
    fresh = await served.connect()
    fresh.send("GET", "/metrics", "Accept-Encoding: identity")
    assert (await fresh.response())[0] == 200
    assert renders.renders == 2


async def test_a_large_render_drops_what_its_readers_have_sent(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
):
    """Past the size kept for newcomers, a render holds a piece or two, not its body."""
    monkeypatch.setattr(oms_scrapes, "SHARE_MAX_BYTES", 256 * 1024)
    renders = SharedRenders(window_seconds=60)
    served = await serve(exporter_with(STALLING_PROJECTS), renders=renders)
    await stalled_scrape(served)
    later = await served.connect()
    later.send("GET", "/metrics", "Accept-Encoding: identity")
    status, _headers, body = await later.response()
    assert status == 200
    assert len(body) > 5_000_000
    assert renders.renders == 2  # the first one was too large to keep for newcomers
    assert renders.in_flight == 1  # the stalled one
    assert renders.kept_bytes < 1_000_000  # not the 4 MB or so it sent before stalling


async def test_a_client_that_stops_reading_is_dropped_quietly(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(oms_web, "WRITE_STALL_TIMEOUT_SECONDS", 0.3)
    served = await serve(exporter_with(STALLING_PROJECTS))
    await stalled_scrape(served)
    guard = served.site.guard
    await wait_until(lambda: guard.open_connections == 0)
    assert served.app[RENDERS_KEY].in_flight == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_client_that_hangs_up_mid_body_logs_no_error(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
):
    served = await serve(exporter_with(STALLING_PROJECTS))
    leaving = await stalled_scrape(served)
    leaving.close()
    await wait_until(lambda: served.app[RENDERS_KEY].in_flight == 0)
    await wait_until(lambda: served.site.guard.open_connections == 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- content negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("x-gzip", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("gzip;q=nonsense", False),
        ("deflate, br", False),
        ("gzipped", False),
    ],
)
def test_accept_encoding_is_parsed_by_tokens_and_q_values(header: str, expected: bool):
    assert gzip_accepted(header) is expected


@pytest.mark.parametrize(
    ("header", "gzipped"), [("gzip;q=0", False), ("gzip;q=0.5", True), ("identity", False)]
)
async def test_metrics_are_gzipped_only_when_the_client_accepts_it(
    serve: ServeFactory, header: str, gzipped: bool
):
    served = await serve(exporter_with(1))
    client = await served.connect()
    client.send("GET", "/metrics", f"Accept-Encoding: {header}")
    status, headers, body = await client.response()
    assert status == 200
    assert ("content-encoding" in headers) is gzipped
    assert headers["vary"] == "Accept-Encoding"
    text = zlib.decompress(body, 31).decode() if gzipped else body.decode()
    assert "oms_project_up{" in text


async def test_openmetrics_at_q_zero_is_not_chosen(serve: ServeFactory):
    served = await serve(exporter_with(1))
    client = await served.connect()
    client.send("GET", "/metrics", "Accept: application/openmetrics-text;q=0, text/plain")
    status, headers, _body = await client.response()
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    client.send("GET", "/metrics", "Accept: application/openmetrics-text; version=1.0.0")
    assert (await client.response())[1]["content-type"].startswith("application/openmetrics")


# --- a whole exporter under a low file limit --------------------------------------------------

FILE_LIMIT = 256
IDLE_SOCKETS = 400


@contextmanager
def exporter_process(*, file_limit: int) -> Iterator[tuple[int, list[str]]]:
    """Run the exporter with RLIMIT_NOFILE set to ``file_limit``; yield its port and log."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    env = {
        "PATH": "/usr/bin:/bin",
        "OMS_EXPORTER_OMS_URL": "http://127.0.0.1:1",
        "OMS_EXPORTER_PROJECT_IDS": "np_a,np_b",
        "OMS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "oms_exporter"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=limit_files,  # only setrlimit, before exec
    )
    lines: list[str] = []
    arrived: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            arrived.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        port = None
        while port is None:
            assert time.monotonic() < deadline, "".join(lines)
            with suppress(queue.Empty):
                line = arrived.get(timeout=0.5)
                if "listening on" in line:
                    port = int(line.split("listening on ")[1].split(":")[1].split('"')[0])
        yield port, lines
    finally:
        stop(process)
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def flood(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections that send nothing; stop early if the server stops accepting."""
    sockets: list[socket.socket] = []
    deadline = time.monotonic() + 15
    try:
        while len(sockets) < count and time.monotonic() < deadline:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=3))
    except OSError:
        pass  # the backlog is full and nobody accepts: what today's exporter comes to
    return sockets


def closed_by_server(sockets: list[socket.socket], *, within_seconds: float) -> int:
    """How many of ``sockets`` the server has closed (EOF or reset) within the time given."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + within_seconds
        while closed < len(sockets) and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                selector.unregister(key.fileobj)
                closed += 1
    return closed


def test_idle_connections_beyond_the_file_limit_do_not_starve_a_scrape():
    """400 silent sockets against 256 files: /metrics still answers, accept() logs little."""
    with exporter_process(file_limit=FILE_LIMIT) as (port, log):
        idle = flood(port, IDLE_SOCKETS)
        try:
            started = time.monotonic()
            status, body = get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert status == 200
            assert "oms_exporter_build_info{" in body
            assert time.monotonic() - started < 5
            assert len(idle) == IDLE_SOCKETS
            # Evicted for the newcomers or timed out after 5 s: none is left hanging.
            assert closed_by_server(idle, within_seconds=10) == IDLE_SOCKETS
            assert get(f"http://127.0.0.1:{port}/metrics", timeout=5)[0] == 200
        finally:
            for sock in idle:
                sock.close()
        accept_errors = [line for line in log if "out of system resource" in line]
        assert len(accept_errors) <= 3, "".join(accept_errors[:5])
        # The cap came from the limit the process runs under, and said so once.
        cap = limits_for(FILE_LIMIT).max_connections
        assert sum(f"connection limit ({cap}) reached" in line for line in log) == 1
