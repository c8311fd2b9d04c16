"""The HTTP face: /metrics, the landing page, /healthz, /readyz, /-/reload; serves only.

The exporter's life (tasks, sessions, reload) belongs to ``runtime.Exporter``.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

from aiohttp import hdrs, web
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from oms_exporter.collector import pieces
from oms_exporter.landing import render_landing
from oms_exporter.runtime import Exporter
from oms_exporter.webconfig import WebConfig, auth_middleware

EXPORTER_KEY: Final = web.AppKey("exporter", Exporter)
TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str) -> bool:
    return any(
        part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(",")
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    exporter = request.app[EXPORTER_KEY]
    openmetrics = wants_openmetrics(request.headers.get(hdrs.ACCEPT, ""))
    parts = exporter.collector.render_parts(openmetrics=openmetrics)
    if openmetrics:
        parts.append(generate_openmetrics(exporter.metrics.registry))  # type: ignore[no-untyped-call]
        content_type = OPENMETRICS_CONTENT_TYPE
    else:
        parts.append(generate_latest(exporter.metrics.registry))
        content_type = TEXT_CONTENT_TYPE
    response = web.StreamResponse(
        headers={hdrs.CONTENT_TYPE: content_type, hdrs.VARY: hdrs.ACCEPT_ENCODING}
    )
    gzip = "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()
    if gzip:
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    # Chunked, a batch of lines at a time: no copy of a large exposition is ever whole.
    response.enable_chunked_encoding()
    await response.prepare(request)
    # Level 1: at 10,000 projects (about 20 MB) level 6 costs 4x the time for 10% less.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None  # 31: gzip
    for piece in pieces(parts):
        if compressor is not None:
            # In a thread: zlib releases the GIL, so compression runs beside the event loop.
            piece = await asyncio.to_thread(compressor.compress, piece)
        if piece:
            await response.write(piece)
    if compressor is not None:
        await response.write(compressor.flush())
    await response.write_eof()
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
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/-/reload", reload)
    return app
