"""One HTTP exchange with OMS: bounded, timed, size-capped, and failures classified."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from oms_exporter.model import Reason
from oms_exporter.oms.envelope import classify_http_status
from oms_exporter.oms.errors import (
    OmsAnswerTooLarge,
    OmsConnectionError,
    OmsDecodeError,
    OmsError,
    OmsHttpError,
    OmsTimeout,
)

_CHUNK_BYTES = 64 * 1024

# Called once per request with its duration and, if it failed, why.
RequestObserver = Callable[[float, Reason | None], None]


def _ignore(_duration: float, _reason: Reason | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


def make_ssl_context(*, cadata: str | None, insecure_skip_verify: bool) -> ssl.SSLContext:
    """Trust the given PEM bundle (or the system CAs); raise ssl.SSLError on a bad bundle."""
    context = ssl.create_default_context(cadata=cadata)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def make_session(
    *,
    username: str | None,
    password: str | None,
    timeout_seconds: float,
    max_concurrency: int,
    ssl_context: ssl.SSLContext | None = None,
) -> aiohttp.ClientSession:
    """Create the one session an OMS target uses for its whole life."""
    headers = {"Accept": "application/json"}
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    connector = aiohttp.TCPConnector(
        limit=max_concurrency, ssl=ssl_context if ssl_context is not None else True
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        headers=headers,
        raise_for_status=False,
    )


class Transport:
    """Send requests to one OMS, never more than ``max_concurrency`` at once."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        max_concurrency: int,
        max_response_bytes: int,
        observer: RequestObserver = _ignore,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_response_bytes = max_response_bytes
        self._observer = observer

    @property
    def max_response_bytes(self) -> int:
        """The configured cap on one answer, after decompression."""
        return self._max_response_bytes

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        max_response_bytes: int | None = None,
    ) -> Answer:
        """Send one request; return any answer with a status below 400, raise otherwise.

        ``max_response_bytes`` replaces the configured cap for this request (project
        listings carry every table of every project).
        """
        limit = self._max_response_bytes if max_response_bytes is None else max_response_bytes
        async with self._slots:
            started = time.perf_counter()
            reason: Reason | None = None
            try:
                answer = await self._exchange(method, path, json_body, limit)
                if answer.status >= 400:
                    raise classify_http_status(answer.status, answer.body)
                return answer
            except OmsError as error:
                reason = error.reason
                raise
            finally:
                self._observer(time.perf_counter() - started, reason)

    async def _exchange(self, method: str, path: str, json_body: Any, limit: int) -> Answer:
        url = self._base_url + path
        try:
            # A redirect is never followed: another host's answer is not this project's data.
            async with self._session.request(
                method, url, json=json_body, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    raise redirect_error(response)
                body = await _read_capped(response, limit)
                return Answer(status=response.status, body=body)
        except TimeoutError:
            raise OmsTimeout("no answer within the request timeout") from None
        except aiohttp.ClientPayloadError:
            raise OmsDecodeError("answer was cut off") from None
        except (aiohttp.ClientError, OSError) as exc:
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise OmsConnectionError(f"cannot reach OMS: {detail}") from None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the decoded body in chunks, never holding more than the cap in memory."""
    length = response.content_length  # on the wire: compressed, if gzip
    if length is not None and length > limit:
        raise OmsAnswerTooLarge(limit)
    # Always streamed, even when announced: aiohttp inflates gzip as it reads, and
    # 500 kB of gzip can inflate to 500 MB.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise OmsAnswerTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def redirect_error(response: aiohttp.ClientResponse) -> OmsHttpError:
    """Name where a redirect points, as scheme://host:port/path: no userinfo, no query."""
    return OmsHttpError(
        f"HTTP {response.status} redirect to {_safe_location(response)}, not followed",
        status=response.status,
    )


def _safe_location(response: aiohttp.ClientResponse) -> str:
    location = response.headers.get("Location")
    if not location:
        return "no Location"
    try:
        target = response.url.join(URL(location))
        port = target.port
        where = f"{target.scheme}://{target.raw_host}:{port}{target.raw_path}"
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        return "an unreadable Location"
    if not target.raw_host or port is None:
        return "an unreadable Location"
    return where[:160]
