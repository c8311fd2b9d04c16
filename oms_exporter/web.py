"""The HTTP face: /metrics, the landing page, /healthz, /readyz, /-/reload; serves only.

The exporter's life (tasks, sessions, reload) belongs to ``runtime.Exporter``; how
connections are accepted and timed out, to ``httpserver``. Scrapes that overlap in time
share one render of /metrics (``scrapes.SharedRenders``): 200 at once cost one body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from oms_exporter.collector import Part
from oms_exporter.heap import TRIM_AFTER_BYTES, trim
from oms_exporter.landing import render_landing
from oms_exporter.metricfilter import FilteredCollector
from oms_exporter.runtime import Exporter
from oms_exporter.scrapes import Reader, SharedRenders
from oms_exporter.webconfig import WebConfig, auth_middleware

EXPORTER_KEY: Final = web.AppKey("exporter", Exporter)
TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# A client that takes a piece (about 128 KiB) this long is not reading: drop it, and its
# hold on a render.
WRITE_STALL_TIMEOUT_SECONDS: Final = 30.0


def _tokens(header: str) -> Iterator[tuple[str, float]]:
    """(lower-cased value, q) per comma-separated token; a malformed q counts as 0."""
    for token in header.split(","):
        value, *params = token.split(";")
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number.strip())
                except ValueError:
                    q = 0.0
        yield value.strip().lower(), q


def wants_openmetrics(accept: str) -> bool:
    """OpenMetrics when the client lists it, as prometheus_client decides, unless at q=0."""
    return any(value == "application/openmetrics-text" and q > 0 for value, q in _tokens(accept))


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether gzip may be sent: ``gzip;q=0`` forbids it, ``*`` covers it when unnamed."""
    named: float | None = None
    anything: float | None = None
    for value, q in _tokens(accept_encoding):
        if value in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif value == "*":
            anything = q
    if named is not None:
        return named > 0
    return anything is not None and anything > 0


RENDERS_KEY: Final = web.AppKey("renders", SharedRenders)
TRIMS_KEY: Final = web.AppKey("trims", set[asyncio.Future[None]])


def _give_back_memory(app: web.Application) -> None:
    """Trim the heap in a thread, after this scrape's references to the texts are gone."""
    trims = app[TRIMS_KEY]
    if not trims:  # one at a time is enough
        done = asyncio.ensure_future(asyncio.to_thread(trim))
        trims.add(done)
        done.add_done_callback(trims.discard)


def _parts(exporter: Exporter, *, openmetrics: bool) -> list[Part]:
    parts = exporter.collector.render_parts(openmetrics=openmetrics)
    own = FilteredCollector(exporter.metrics.registry, exporter.config.metric_filter)
    if openmetrics:
        parts.append(generate_openmetrics(own))  # type: ignore[no-untyped-call]
    else:
        parts.append(generate_latest(own))
    return parts


async def _send(response: web.StreamResponse, reader: Reader) -> None:
    """Write every piece, each drained before the next; a stalled client raises TimeoutError.

    A slow client holds one piece and the transport's buffer, not a copy of the body.
    """
    while (piece := await reader.next_piece()) is not None:
        async with asyncio.timeout(WRITE_STALL_TIMEOUT_SECONDS):
            await response.write(piece)
        # A fast client never makes write() wait: yield anyway, so that one large body does
        # not hold the loop, and scrapes arriving meanwhile can join this render.
        await asyncio.sleep(0)


async def metrics(request: web.Request) -> web.StreamResponse:
    exporter = request.app[EXPORTER_KEY]
    openmetrics = wants_openmetrics(request.headers.get(hdrs.ACCEPT, ""))
    gzip = gzip_accepted(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    response = web.StreamResponse(
        headers={hdrs.CONTENT_TYPE: content_type, hdrs.VARY: hdrs.ACCEPT_ENCODING}
    )
    if gzip:
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"

    def produce(openmetrics: bool) -> list[Part]:
        return _parts(exporter, openmetrics=openmetrics)

    if gzip:  # prepare renders and deflates a round's changes faster than this scrape could
        await exporter.collector.prepared()
    with request.app[RENDERS_KEY].use(produce, openmetrics=openmetrics, gzip=gzip) as reader:
        response.content_length = await reader.size()  # sent a piece at a time, not copied
        await response.prepare(request)
        try:
            # aiohttp writes whatever it is given, HEAD or not: a body after a HEAD answer
            # would be read as the next answer on a kept-alive connection.
            if request.method != hdrs.METH_HEAD:
                await _send(response, reader)
            await response.write_eof()
        except (ConnectionError, TimeoutError):
            # The client left or stopped reading: end quietly, it is not our error.
            if request.transport is not None:
                request.transport.abort()
    if exporter.collector.take_settled_bytes() >= TRIM_AFTER_BYTES:
        asyncio.get_running_loop().call_soon(_give_back_memory, request.app)
    return response


async def landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    return web.Response(text=render_landing(exporter), content_type="text/html", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    """200 while polling keeps up; 503 lets Kubernetes or systemd restart a wedged process."""
    problem = request.app[EXPORTER_KEY].health()
    if problem is None:
        return web.Response(text="ok\n")
    return web.Response(status=503, text=f"unhealthy: {problem}\n")


async def readyz(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    if not exporter.poller.first_round_done.is_set():
        return web.Response(status=503, text="waiting for the first poll round\n")
    problem = exporter.health()
    if problem is not None:
        return web.Response(status=503, text=f"unhealthy: {problem}\n")
    return web.Response(text="ready\n")


async def reload(request: web.Request) -> web.Response:
    error = await request.app[EXPORTER_KEY].reload()
    if error is None:
        return web.Response(text="configuration reloaded\n")
    return web.Response(status=500, text=f"reload failed, running configuration kept: {error}\n")


def create_app(exporter: Exporter, web_config: WebConfig | None = None) -> web.Application:
    middlewares = [auth_middleware(web_config)] if web_config and web_config.users else []
    app = web.Application(middlewares=middlewares)
    app[EXPORTER_KEY] = exporter
    app[RENDERS_KEY] = SharedRenders()
    app[TRIMS_KEY] = set()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/-/reload", reload)
    return app
