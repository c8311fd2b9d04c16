"""Discovery: every project a 4.x OMS lists (``ListProjects``), filtered as configured."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from oms_exporter.model import ProjectDetails
from oms_exporter.oms import v4
from oms_exporter.oms.transport import Transport

# A runaway pager (a server that ignores pageNumber) stops here: 150,000 projects.
MAX_PAGES: Final = 1000


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """Which listed projects to keep; every field empty keeps them all."""

    types: tuple[str, ...] = ()  # MIGRATION, SYNC
    statuses: tuple[str, ...] = ()  # upper case
    labels: tuple[str, ...] = ()
    include: str | None = None  # regex on project ID or name
    exclude: str | None = None


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


async def list_projects(transport: Transport, settings: DiscoveryFilter) -> list[ProjectDetails]:
    """Page through ListProjects until ``totalCount`` records (or an empty page) arrived."""
    request: dict[str, Any] = {"pageSize": v4.PAGE_SIZE}
    if len(settings.types) == 1:
        request["type"] = settings.types[0]
    found: dict[str, ProjectDetails] = {}
    received = 0
    for page in range(1, MAX_PAGES + 1):
        body = await v4.call(transport, "ListProjects", {**request, "pageNumber": page})
        projects, total = v4.parse_page(body)
        received += len(projects)
        for project in projects:
            found.setdefault(project.project_id, project)
        if not projects or (total is not None and received >= total):
            break
        if total is None and len(projects) < v4.PAGE_SIZE:
            break
    return [project for project in found.values() if matches(project, settings)]
