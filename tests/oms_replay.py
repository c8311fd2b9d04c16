"""A scriptable OMS look-alike for client tests: replays answers of the documented shapes.

Each test says what OMS answers for which project; the server records every request so
tests can check what the client sent (auth, bodies, how often).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded


@dataclass
class Reply:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    delay_seconds: float = 0.0
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Location, Content-Encoding

    @classmethod
    def json(cls, value: object, *, status: int = 200) -> Reply:
        return cls(json.dumps(value).encode(), status=status)

    @classmethod
    def fixture(cls, name: str, *, status: int = 200) -> Reply:
        content_type = "text/html" if name.endswith(".html") else "application/json"
        return cls(fixture_bytes(name), status=status, content_type=content_type)


def progress_with(name: str, **changes: object) -> Reply:
    """A documented answer with some ``data`` fields changed (None deletes nothing: sets null)."""
    answer = fixture_json(name)
    data_key = "Data" if "Data" in answer else "data"
    answer[data_key] = {**answer[data_key], **changes}
    return Reply.json(answer)


def describe_project(project_id: str, kind: str = "MIGRATION", name: str = "demo") -> Reply:
    return Reply.json(
        {
            "success": True,
            "errorDetail": None,
            "code": None,
            "message": None,
            "cost": "4 ms",
            "data": {"id": project_id, "name": name, "type": kind, "status": "RUNNING"},
        }
    )


@dataclass
class Seen:
    method: str
    path: str
    action: str | None
    project_id: str | None
    authorization: str | None
    body: dict[str, Any] | None = None  # the JSON object a 4.x request sent


@dataclass
class ReplayOms:
    """Answers per project id; ``speaks_v4=False`` makes it a 3.3 OMS behind nginx."""

    speaks_v4: bool = True
    # What a 3.3 OMS answers on the 4.x path (default: nginx's 404 page).
    v4_path_answer: Reply | None = None
    # A list is a script: each request takes the next reply, the last one repeats.
    v4: dict[str, Reply | list[Reply]] = field(default_factory=dict)
    describe: dict[str, Reply] = field(default_factory=dict)
    v3_migration: dict[str, Reply] = field(default_factory=dict)
    v3_sync: dict[str, Reply] = field(default_factory=dict)
    listed: list[dict[str, Any]] = field(default_factory=list)  # what ListProjects pages through
    steps: dict[str, Reply] = field(default_factory=dict)
    # ListProjectFullVerifyResult: a reply (or script) per project, or the project's
    # (differentNumber, tables) paged as the request asks.
    verify: dict[str, Reply | list[Reply]] = field(default_factory=dict)
    verified: dict[str, tuple[object, list[dict[str, Any]]]] = field(default_factory=dict)
    list_answer: Reply | None = None  # answer every ListProjects page with this instead
    everything: Reply | None = None  # answer every API request with this (outages)
    without_actions: set[str] = field(default_factory=set)  # Actions this OMS does not know
    total_is_pages: bool = False  # ListProjects' totalCount counts pages, not records
    refuse_sort: bool = False  # ListProjects answers PARAM_ERROR to sortField
    # Answer ListProjects pages after the first only once this many progress requests
    # came (or after 10 s, noted in pages_held_too_long): polling overlaps the listing.
    pages_wait_for_progress: int = 0
    pages_held_too_long: bool = False
    _progress_came: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    # Answer ListProjects page N only once page N + 1 was asked (or after 10 s, noted in
    # pages_held_too_long): the next page is asked for while one is read.
    page_waits_for_next: int = 0
    # ... once page N + this many was asked: that many pages are asked ahead.
    pages_ahead_awaited: int = 1
    _next_page_asked: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v2", self._v4)
        app.router.add_get("/api/omsp/v2/migrations/{id}/progress", self._v3_migration)
        app.router.add_get("/api/omsp/v2/sync/{id}/progress", self._v3_sync)
        return app

    def count(self, *, action: str | None = None, path_part: str = "") -> int:
        return sum(
            1
            for seen in self.seen
            if (action is None or seen.action == action) and path_part in seen.path
        )

    async def _answer(self, reply: Reply | list[Reply]) -> web.Response:
        if isinstance(reply, list):
            reply = reply.pop(0) if len(reply) > 1 else reply[0]
        if reply.hang:
            await asyncio.Event().wait()
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        return web.Response(
            body=reply.body,
            status=reply.status,
            content_type=reply.content_type,
            headers=reply.headers,
        )

    def _record(
        self,
        request: web.Request,
        action: str | None,
        project_id: str | None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                action,
                project_id,
                request.headers.get("Authorization"),
                body,
            )
        )
        if (
            self.pages_wait_for_progress
            and action == "DescribeProjectProgress"
            and self.count(action=action) >= self.pages_wait_for_progress
        ):
            self._progress_came.set()
        if (
            self.page_waits_for_next
            and action == "ListProjects"
            and body is not None
            and body.get("pageNumber") == self.page_waits_for_next + self.pages_ahead_awaited
        ):
            self._next_page_asked.set()

    async def _v4(self, request: web.Request) -> web.Response:
        action = request.query.get("Action")
        body: dict[str, Any] = {}
        try:
            body = await request.json()
            project_id = str(body.get("id") or body.get("projectId"))
        except (ValueError, AttributeError):
            project_id = None
        self._record(request, action, project_id, body if isinstance(body, dict) else None)
        if self.everything is not None:
            return await self._answer(self.everything)
        if not self.speaks_v4:
            return await self._answer(
                self.v4_path_answer or Reply.fixture("nginx_404.html", status=404)
            )
        if action in self.without_actions:  # an older OMS: the documented PARAM_ERROR shape
            return await self._answer(Reply.fixture("v4_unknown_action.json"))
        if action == "ListProjects":
            if self.pages_wait_for_progress and int(body.get("pageNumber", 1)) > 1:
                await self._held_until(self._progress_came)
            if self.page_waits_for_next and body.get("pageNumber") == self.page_waits_for_next:
                await self._held_until(self._next_page_asked)
            if self.refuse_sort and "sortField" in body:
                return await self._answer(Reply.json({"success": False, "code": "PARAM_ERROR"}))
            return await self._answer(self.list_answer or self._page(body))
        if action == "DescribeProjectSteps":
            return await self._answer(
                self.steps.get(project_id or "") or Reply.fixture("v4_not_found.json")
            )
        if action == "ListProjectFullVerifyResult":
            return await self._answer(self._verification(project_id or "", body))
        if action == "DescribeProject":
            reply = self.describe.get(project_id or "") or describe_project(project_id or "")
            return await self._answer(reply)
        if action != "DescribeProjectProgress":
            return await self._answer(Reply.json({"success": False, "code": "PARAM_ERROR"}))
        reply = self.v4.get(project_id or "") or Reply.fixture("v4_not_found.json")
        return await self._answer(reply)

    async def _held_until(self, event: asyncio.Event, timeout_seconds: float = 10.0) -> None:
        """Hold a page until ``event`` (set in _record), or note that it took too long."""
        try:
            await asyncio.wait_for(event.wait(), timeout_seconds)
        except TimeoutError:
            self.pages_held_too_long = True

    def _verification(self, project_id: str, body: dict[str, Any]) -> Reply | list[Reply]:
        scripted = self.verify.get(project_id)
        if scripted is not None:
            return scripted
        if project_id not in self.verified:
            return Reply.fixture("v4_not_found.json")
        different, tables = self.verified[project_id]
        number, size = int(body.get("pageNumber", 1)), min(int(body.get("pageSize", 10)), 150)
        page = tables[(number - 1) * size : number * size]
        return Reply.json(
            {
                "success": True,
                "errorDetail": None,
                "code": None,
                "message": None,
                "requestId": "v",
                "pageNumber": number,
                "pageSize": size,
                "totalCount": len(tables),
                "cost": "7 ms",
                "data": {"differentNumber": different, "fullVerifyTableStatistics": page},
            }
        )

    def _page(self, body: dict[str, Any]) -> Reply:
        """Page as the documents say: pageSize at most 150, totalCount counts records (the
        Chinese documents, ODC) or pages (the English documents, ``total_is_pages``)."""
        number = int(body.get("pageNumber", 1))
        size = min(int(body.get("pageSize", 10)), 150)
        wanted = body.get("type")
        rows = [p for p in self.listed if wanted in (None, p.get("type"))]
        page = rows[(number - 1) * size : number * size]
        total = -(-len(rows) // size) if self.total_is_pages else len(rows)
        return Reply.json(
            {
                "success": True,
                "errorDetail": None,
                "code": None,
                "message": None,
                "requestId": "r",
                "pageNumber": number,
                "pageSize": size,
                "totalCount": total,
                "cost": "5 ms",
                "data": page,
            }
        )

    async def _v3(self, request: web.Request, answers: dict[str, Reply]) -> web.Response:
        project_id = request.match_info["id"]
        self._record(request, None, project_id)
        if self.everything is not None:
            return await self._answer(self.everything)
        return await self._answer(answers.get(project_id) or Reply.fixture("v3_not_found.json"))

    async def _v3_migration(self, request: web.Request) -> web.Response:
        return await self._v3(request, self.v3_migration)

    async def _v3_sync(self, request: web.Request) -> web.Response:
        return await self._v3(request, self.v3_sync)


def strings_in(value: object) -> Iterator[str]:
    """Every string inside a model value (dataclasses, tuples, dicts), to check encodings."""
    if isinstance(value, str):
        yield value
    elif is_dataclass(value) and not isinstance(value, type):
        for item in fields(value):
            yield from strings_in(getattr(value, item.name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def assert_encodable(value: object) -> None:
    """Fail unless every string in ``value`` encodes as UTF-8 (no lone surrogates)."""
    for text in strings_in(value):
        text.encode("utf-8")


def verify_entry(
    table: str,
    result: str = "CONSISTENT",
    *,
    schema: str = "shop",
    status: str = "FINISHED",
    progress: object = "100",
    consistent: object = 1000,
    mismatched: object = 0,
    source_only: object = 0,
    dest_only: object = 0,
) -> dict[str, Any]:
    """One ``fullVerifyTableStatistics`` entry in ODC's shape (FullVerifyTableStatisticVO)."""
    return {
        "sourceTableName": table,
        "sourceSchemaName": schema,
        "destSchemaName": schema,
        "sourceOnlyCount": source_only,
        "destOnlyCount": dest_only,
        "mismatchedCount": mismatched,
        "consistentCount": consistent,
        "progress": progress,
        "message": None,
        "status": status,
        "resultType": result,
        "resultDesc": None,
        "errorDetails": None,
    }
