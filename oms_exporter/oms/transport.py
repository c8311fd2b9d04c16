"""One HTTP exchange with OMS: bounded, timed, size-capped, and failures classified."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

from oms_exporter.model import Reason
from oms_exporter.oms.envelope import classify_http_status
from oms_exporter.oms.errors import OmsError, OmsHttpError, OmsTimeout
from oms_exporter.oms.httpclient import HttpClient, Response

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
    base_url: str,
    username: str | None,
    password: str | None,
    timeout_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpClient:
    """Create the one client an OMS target uses for its whole life."""
    headers = {"Accept": "application/json"}
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return HttpClient(
        base_url, headers=headers, timeout_seconds=timeout_seconds, ssl_context=ssl_context
    )


class Transport:
    """Send requests to one OMS, never more than ``max_concurrency`` at once."""

    def __init__(
        self,
        *,
        session: HttpClient,
        max_concurrency: int,
        max_response_bytes: int,
        observer: RequestObserver = _ignore,
    ) -> None:
        self._session = session
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
        body: bytes | None = None,
        max_response_bytes: int | None = None,
    ) -> Answer:
        """Send one request (``body``: JSON already encoded); return any answer with a
        status below 400, raise otherwise.

        ``max_response_bytes`` replaces the configured cap for this request (project
        listings carry every table of every project).
        """
        limit = self._max_response_bytes if max_response_bytes is None else max_response_bytes
        async with self._slots:
            started = time.perf_counter()
            reason: Reason | None = None
            try:
                answer = await self._exchange(method, path, body, limit)
                if answer.status >= 400:
                    raise classify_http_status(answer.status, answer.body)
                return answer
            except OmsError as error:
                reason = error.reason
                raise
            finally:
                self._observer(time.perf_counter() - started, reason)

    async def _exchange(self, method: str, path: str, body: bytes | None, limit: int) -> Answer:
        try:
            response = await self._session.request(method, path, body=body, limit=limit)
        except TimeoutError:
            raise OmsTimeout("no answer within the request timeout") from None
        # A redirect is never followed: another host's answer is not this project's data.
        if 300 <= response.status < 400:
            raise redirect_error(self._session.url_for(path), response)
        return Answer(status=response.status, body=response.body)


def redirect_error(url: URL, response: Response) -> OmsHttpError:
    """Name where a redirect of a request to ``url`` points, as scheme://host:port/path:
    no userinfo, no query."""
    return OmsHttpError(
        f"HTTP {response.status} redirect to {_safe_location(url, response)}, not followed",
        status=response.status,
    )


def _safe_location(url: URL, response: Response) -> str:
    location = response.location
    if not location:
        return "no Location"
    try:
        target = url.join(URL(location))
        port = target.port
        where = f"{target.scheme}://{target.raw_host}:{port}{target.raw_path}"
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        return "an unreadable Location"
    if not target.raw_host or port is None:
        return "an unreadable Location"
    return where[:160]
