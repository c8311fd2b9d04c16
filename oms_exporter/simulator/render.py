"""The shapes of OMS answers: the JSON envelope, business errors, nginx pages, broken replies.

Per-request work is a dict, a few f-strings and one json.dumps, because the benchmark asks
10,000 projects at thousands of requests per second; nothing is logged per request.
"""

from __future__ import annotations

import functools
import json
import struct
import zlib
from typing import Final

from aiohttp import web

from oms_exporter.simulator.scenario import DEEP_LEVELS, DEEP_MARK
from oms_exporter.simulator.state import SimState

NOT_FOUND_V4: Final = "GHANA-PROJECT000001"
NOT_FOUND_V3: Final = "PROJECT_NOT_FOUND_ERROR"
CM_UNAVAILABLE: Final = "GHANA-OPERAT000001"
OVERSIZED_BYTES: Final = 4 * 1024 * 1024
BROKEN_JSON: Final = b'{"success":true,"errorDetail":null,"code":null,"data":{"status":"RUNN'
BOMB_INFLATED_BYTES: Final = 500 * 1024 * 1024
ERROR_BODY_LEVELS: Final = 100_000
# .invalid never resolves (RFC 2606); userinfo and query are what a client must not echo.
REDIRECT_LOCATION: Final = (
    "http://sim-user:sim-secret@oms-elsewhere.invalid:8089/api/v2?token=sim-token"
)
_DEEP_JSON: Final = json.dumps(DEEP_MARK).encode()


def nginx_html(status: int, reason: str) -> web.Response:
    """Answer the way nginx in front of OMS does when the app behind it cannot."""
    title = f"{status} {reason}"
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def envelope(
    state: SimState, data: object, *, success: bool = True, code: object = None, **extra: object
) -> dict[str, object]:
    """Wrap `data` in the full OMS envelope of this flavour."""
    state.seq += 1
    body: dict[str, object] = {
        "success": success,
        "code": code,
        "message": None,
        "advice": None,
        "requestId": f"sim-{state.seq:010x}",
        "pageNumber": None,
        "pageSize": None,
        "totalCount": None,
        "cost": f"{1 + state.seq % 29} ms",
        "data": data,
    }
    if state.config.api == "v4":
        body["errorDetail"] = None
    body.update(extra)
    return body


def json_response(body: object, *, status: int = 200) -> web.Response:
    """Serialise compactly: the bulk benchmark makes this the hottest line."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(status=status, body=raw, content_type="application/json")


def nested(levels: int) -> bytes:
    """``levels`` nested arrays, written directly: json.dumps would recurse too deeply."""
    return b"[" * levels + b"]" * levels


def deep_json_response(body: object) -> web.Response:
    """Serialise like json_response, with each DEEP_MARK replaced by a deep nesting."""
    raw = json.dumps(body, separators=(",", ":")).encode().replace(_DEEP_JSON, nested(DEEP_LEVELS))
    return web.Response(body=raw, content_type="application/json")


@functools.cache
def _gzip_bomb() -> bytes:
    """A valid progress-shaped answer padded to 500 MB, gzipped (about 500 kB) in 0.2 s."""
    head = b'{"success":true,"code":null,"data":{"status":"RUNNING"}'
    block = b" " * (1024 * 1024)  # JSON whitespace: a client without a cap parses it all
    tail = b"}"
    count = BOMB_INFLATED_BYTES // len(block)
    # After a full flush deflate forgets its history, so every block compresses to the
    # same bytes: compress one and repeat it instead of compressing 500 MB.
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate
    start = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    middle = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.compress(tail) + packer.flush()
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + count * len(block) + len(tail)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + start + middle * count + end + trailer


@functools.cache
def _deep_error_body() -> bytes:
    """An OMS-shaped error whose ``data`` nests too deep for a recursive JSON parser."""
    head = b'{"success":false,"code":"INNER_ERROR","message":"internal error","data":'
    return head + nested(ERROR_BODY_LEVELS) + b"}"


def hostile_transport(fault: str) -> web.Response | None:
    """Act out a hostile fault of the HTTP answer itself, or return None."""
    if fault == "redirect":
        return web.Response(status=302, headers={"Location": REDIRECT_LOCATION})
    if fault == "gzip_bomb":
        # Sent as is: aiohttp compresses nothing itself unless asked; Content-Length is set.
        return web.Response(
            body=_gzip_bomb(),
            content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
    if fault == "deep_error_body":
        return web.Response(status=500, body=_deep_error_body(), content_type="application/json")
    return None


def error(state: SimState, code: str, message: str, *, status: int = 200) -> web.Response:
    """Answer a business error: HTTP 200 and success:false, as OMS does."""
    extra: dict[str, object] = {"message": message, "advice": "Check the request and retry."}
    if state.config.api == "v4":
        extra["errorDetail"] = {"code": code, "message": message}
    body = envelope(state, None, success=False, code=code, **extra)
    return json_response(body, status=status)


def not_found(state: SimState, project_id: str) -> web.Response:
    """Answer for a deleted or unknown project."""
    code = NOT_FOUND_V4 if state.config.api == "v4" else NOT_FOUND_V3
    return error(state, code, f"The project does not exist: {project_id}")


def unauthorized(state: SimState) -> web.Response:
    """Answer wrong or missing credentials: HTTP 401 with OMS's JSON and a Basic challenge."""
    body = envelope(state, None, success=False, code="AUTHENTICATION_ERROR")
    body["message"] = "Authentication failed: wrong or missing username or password"
    response = json_response(body, status=401)
    response.headers["WWW-Authenticate"] = 'Basic realm="OMS"'
    return response


def transport_fault(fault: str) -> web.Response | None:
    """Act out a fault that breaks the HTTP answer itself, or return None."""
    if fault == "http_500":
        return web.Response(status=500, text="Internal Server Error", content_type="text/plain")
    if fault == "http_502_html":
        return nginx_html(502, "Bad Gateway")
    if fault == "broken_json":
        return web.Response(body=BROKEN_JSON, content_type="application/json")
    return None


def pascal(value: object) -> object:
    """Capitalise every key, as Alibaba Cloud and OCP proxies present the same API."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value
