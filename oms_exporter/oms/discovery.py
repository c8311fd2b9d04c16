"""Discovery: every project a 4.x OMS lists (``ListProjects``), filtered as configured."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from oms_exporter.model import ListedProject, ProjectDetails
from oms_exporter.oms import v4
from oms_exporter.oms.errors import OmsAnswerTooLarge, OmsApiError
from oms_exporter.oms.transport import Transport

log = logging.getLogger(__name__)

# A runaway pager (a server that ignores pageNumber) stops here: 1,000 pages of 150.
MAX_PAGES: Final = 1000
MAX_RECORDS: Final = MAX_PAGES * v4.PAGE_SIZE
# Page sizes tried, largest first, when a page is refused as too large. Each divides the
# one before, so a smaller page starts exactly where the refused one would have.
PAGE_SIZES: Final = (150, 75, 25, 5, 1)
# Projects each too large for one page of one: after this many the scan gives up (the last
# list is kept) instead of asking on, one project per request.
MAX_SKIPPED: Final = 10
# A stable order: a project created during a scan lands on the last page, shifting none.
SORT: Final = {"sortField": "gmtCreate", "order": "asc"}
# Pages asked for ahead of the one being read, once a page came back full (see list_projects).
PAGES_AHEAD: Final = 2


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """Which listed projects to keep; every field empty keeps them all."""

    types: tuple[str, ...] = ()  # MIGRATION, SYNC
    statuses: tuple[str, ...] = ()  # upper case
    labels: tuple[str, ...] = ()
    include: str | None = None  # regex on project ID or name
    exclude: str | None = None


@dataclass(slots=True)
class Paging:
    """What one OMS taught about listing it, kept from one discovery to the next."""

    size_index: int = 0  # into PAGE_SIZES: the page size that fitted last time
    sort: bool = True  # False once OMS refused the sort fields

    @property
    def page_size(self) -> int:
        return PAGE_SIZES[self.size_index]


def matches(project: ProjectDetails, settings: DiscoveryFilter) -> bool:
    """Apply the filters OMS cannot apply server-side, all of them, in the documented order."""
    if settings.types and project.type not in settings.types:
        return False
    if settings.statuses and project.status not in settings.statuses:
        return False
    if settings.labels and not set(settings.labels) & set(project.labels.split(",")):
        return False
    texts = (project.project_id, project.name)
    if settings.include and not any(re.search(settings.include, text) for text in texts):
        return False
    return not (settings.exclude and any(re.search(settings.exclude, text) for text in texts))


async def list_projects(
    transport: Transport,
    settings: DiscoveryFilter,
    paging: Paging | None = None,
    *,
    wanted: frozenset[str] | None = None,
    on_page: Callable[[list[ListedProject]], None] | None = None,
) -> list[ListedProject]:
    """Page through ListProjects until a page shorter than asked (or empty) arrives.

    ``totalCount`` is not trusted (pages in one document, records in another). A page
    refused as too large is asked again smaller; ``paging`` remembers what fitted. With
    ``wanted``, only those projects are kept, and paging stops once all are found;
    ``on_page`` is given each page's new (wanted) projects as it arrives, so that polling
    them need not wait for the last page.

    Once a page came back full, the PAGES_AHEAD pages after the next are asked for
    before the next is read: OMS builds them while this process waits for and parses the
    other (at 10,000 projects a page takes OMS about as long as it takes to parse).
    Against an OMS answering a page in 60 ms, one page ahead listed 10,000 projects in
    3.2 s, two in 2.3 s; against one answering in about 15 ms, both took the same. That
    costs at most PAGES_AHEAD requests more at the end of a listing, and at most
    PAGES_AHEAD + 1 pages asked at once: OMS is shared, and each page is a query of 150
    projects with their mappings.
    """
    paging = paging if paging is not None else Paging()
    base: dict[str, Any] = {"type": settings.types[0]} if len(settings.types) == 1 else {}
    limit = v4.project_answer_bytes(transport)
    found: dict[str, ListedProject] = {}
    offset = 0  # records asked so far: always a multiple of the current page size
    largest = 0  # bytes of the largest page read
    skipped = 0  # projects too large to list even one per page
    probing_sort = False  # asking again without the sort fields, after a PARAM_ERROR
    ahead: deque[_Ahead] = deque()  # the next pages, asked for while this one is read
    full = False  # the last page read was full at the current size
    try:
        while offset < MAX_RECORDS:
            size = paging.page_size
            page = {**base, **(SORT if paging.sort else {})}
            page.update(pageNumber=offset // size + 1, pageSize=size)
            key = (offset, size, paging.sort)
            try:
                if ahead and ahead[0].key == key:
                    asked = ahead.popleft().task
                else:
                    _cancel(ahead)  # asked before the page size or sort changed
                    asked = _ask(transport, page, limit)
                following = ahead[-1].key[0] + size if ahead else offset + size
                while full and len(ahead) < PAGES_AHEAD and following < MAX_RECORDS:
                    asking = {**page, "pageNumber": following // size + 1}
                    ahead.append(
                        _Ahead((following, size, paging.sort), _ask(transport, asking, limit))
                    )
                    following += size
                full = False
                body = await asked
                projects, items = v4.parse_page(body)  # business errors come as HTTP 200
            except OmsAnswerTooLarge:
                if paging.size_index + 1 < len(PAGE_SIZES):
                    paging.size_index += 1
                    continue
                skipped += 1  # one project alone is over the cap: it cannot be listed
                if skipped >= MAX_SKIPPED:
                    raise
                offset += 1
                continue
            except OmsApiError as error:
                if probing_sort:  # refused without the sort fields too: they were not the cause
                    paging.sort = True
                    raise
                if offset or not paging.sort or error.code != "PARAM_ERROR":
                    raise
                paging.sort, probing_sort = False, True  # perhaps an OMS without sortField
                continue
            probing_sort = False
            largest = max(largest, len(body))
            new: list[ListedProject] = []
            for project in projects:
                if project.details.project_id not in found:
                    found[project.details.project_id] = project
                    new.append(project)
            if on_page is not None:
                on_page([p for p in new if wanted is None or p.details.project_id in wanted])
            offset += size
            full = items >= size
            if not full:
                break
            if wanted is not None and wanted <= found.keys():
                break
            if not new:  # a full page of projects already seen: pageNumber is ignored
                break
    finally:
        _cancel(ahead)  # not needed after all: the listing ended or failed
    if skipped:
        log.warning(
            "%d project(s) listed by ListProjects are each larger than %d bytes: not discovered",
            skipped,
            limit,
        )
    paging.size_index = _grown(paging.size_index, largest, limit)
    if wanted is not None:
        return [project for pid, project in found.items() if pid in wanted]
    return [project for project in found.values() if matches(project.details, settings)]


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A page asked for before it is read: (offset, page size, sorted) and its answer."""

    key: tuple[int, int, bool]
    task: asyncio.Task[bytes]


def _cancel(ahead: deque[_Ahead]) -> None:
    while ahead:
        ahead.popleft().task.cancel()


def _ask(transport: Transport, page: dict[str, Any], limit: int) -> asyncio.Task[bytes]:
    """Start asking for one page; its outcome is always retrieved, even if never awaited."""
    task = asyncio.ensure_future(v4.call(transport, "ListProjects", page, max_response_bytes=limit))
    task.add_done_callback(_retrieve)
    return task


def _retrieve(task: asyncio.Task[bytes]) -> None:
    if not task.cancelled():
        task.exception()  # a page asked ahead and dropped: its failure is not news


def _grown(size_index: int, largest_page_bytes: int, limit: int) -> int:
    """The largest page size whose pages would likely stay under half the cap.

    Estimated from the largest page read: after projects shrank, pages grow again.
    """
    estimate = float(largest_page_bytes)
    while size_index:
        estimate *= PAGE_SIZES[size_index - 1] / PAGE_SIZES[size_index]
        if estimate >= limit / 2:
            break
        size_index -= 1
    return size_index
