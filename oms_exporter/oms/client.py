"""One interface over the three OMS APIs, detecting which one a server speaks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from oms_exporter.model import (
    Api,
    FullVerification,
    ListedProject,
    ProjectDetails,
    ProjectProgress,
    Step,
)
from oms_exporter.oms import discovery, v3, v4
from oms_exporter.oms.discovery import DiscoveryFilter, Paging
from oms_exporter.oms.errors import (
    OmsAuthFailed,
    OmsDecodeError,
    OmsError,
    OmsHttpError,
    OmsInvalidAnswer,
    OmsProjectNotFound,
    is_transient,
)
from oms_exporter.oms.transport import Transport

log = logging.getLogger(__name__)

# What the operator asked for: detect, or one flavour.
ApiChoice = Literal["auto", "v4", "v3-migration", "v3-sync"]
Server = Literal["v4", "v3"]
_SERVER_OF_CHOICE: Final[dict[ApiChoice, Server | None]] = {
    "auto": None,
    "v4": "v4",
    "v3-migration": "v3",
    "v3-sync": "v3",
}
# What a 3.3 OMS (nginx) answers on the 4.x path, and a 4.x OMS on a 3.3 path.
_WRONG_API_STATUSES: Final = frozenset({404, 405})
_NO_DISCOVERY: Final = "OMS 3.3 has no ListProjects: discovery needs OMS 4.x"


class DiscoveryUnavailable(Exception):
    """This OMS cannot list its projects (3.3); static IDs keep working."""


def _ignore_count(_count: int) -> None:
    return None


def _ignore() -> None:
    return None


@dataclass(frozen=True, slots=True)
class ClientObserver:
    """What the client repaired in OMS's answers, for counters; no-ops by default."""

    dropped_steps: Callable[[int], None] = _ignore_count  # steps beyond v4.MAX_STEPS
    checkpoint_converted: Callable[[], None] = _ignore  # a millisecond checkpoint read as s


def _wrong_path(error: OmsError) -> bool:
    return isinstance(error, OmsProjectNotFound) or (
        isinstance(error, OmsHttpError) and error.status in _WRONG_API_STATUSES
    )


class OmsClient:
    """Fetch any project's progress from one OMS; cache what detection learned."""

    def __init__(
        self,
        *,
        transport: Transport,
        api: ApiChoice,
        oms_name: str,
        observer: ClientObserver | None = None,
    ) -> None:
        self._transport = transport
        self._observer = observer or ClientObserver()
        self._choice = api
        self._oms_name = oms_name
        self._server: Server | None = _SERVER_OF_CHOICE[api]
        self._v3_apis: dict[str, Api] = {}
        self._v4_details: dict[str, ProjectDetails] = {}
        self._paging = Paging()  # the ListProjects page size that fits this OMS

    @property
    def server_api(self) -> Server | None:
        """The API family this OMS speaks, once known."""
        return self._server

    def remember(self, details: list[ProjectDetails]) -> None:
        """Keep what discovery learned, so no DescribeProject call is needed for these."""
        for item in details:
            self._v4_details[item.project_id] = item

    def forget(self, project_id: str) -> None:
        """Drop what was learned about a project no longer polled."""
        self._v3_apis.pop(project_id, None)
        self._v4_details.pop(project_id, None)

    async def fetch_progress(self, project_id: str) -> ProjectProgress:
        """One project's progress, from whichever API this OMS speaks."""
        if self._server is None:
            progress = await self._detect(project_id)
        elif self._server == "v4":
            progress = await self._fetch_v4(project_id)
        else:
            progress = await self._fetch_v3(project_id)
        for point in progress.checkpoints:
            if point.from_milliseconds:
                self._observer.checkpoint_converted()
        return progress

    async def _detect(self, project_id: str) -> ProjectProgress:
        try:
            progress = await self._fetch_v4(project_id)
        except OmsHttpError as error:
            if error.status not in _WRONG_API_STATUSES:
                raise
            self._learn("v3")  # nginx's 404 for /api/v2: the documented 3.3 answer
            return await self._fetch_v3(project_id)
        except (OmsDecodeError, OmsInvalidAnswer) as error:
            # Not an OMS envelope on the 4.x path: a 3.3 behind some other proxy page, or
            # one broken 4.x answer. Let the 3.3 paths decide.
            return await self._try_v3(project_id, error)
        except OmsError as error:
            if not is_transient(error) and not isinstance(error, OmsAuthFailed):
                self._learn("v4")  # a well-formed OMS envelope came back from the 4.x path
            raise
        self._learn("v4")
        return progress

    async def _try_v3(self, project_id: str, v4_error: OmsError) -> ProjectProgress:
        try:
            progress = await self._fetch_v3(project_id)
        except OmsError:
            # Only a good 3.3 answer proves 3.3: a 4.x OMS may serve the old paths too.
            raise v4_error from None
        self._learn("v3")
        return progress

    def _learn(self, server: Server) -> None:
        if self._server != server:
            self._server = server
            family = "4.x" if server == "v4" else "3.3"
            log.info(
                "OMS %s speaks the %s API", self._oms_name, family, extra={"oms": self._oms_name}
            )

    async def _fetch_v4(self, project_id: str) -> ProjectProgress:
        body = await v4.call(self._transport, "DescribeProjectProgress", {"id": project_id})
        details = self._v4_details.get(project_id)
        progress = v4.parse_progress(project_id, body, details=details)
        if details is not None:
            return progress
        # First successful answer: learn the project's type and name once.
        details = await self._describe_v4(project_id)
        return progress if details is None else v4.parse_progress(project_id, body, details=details)

    async def _describe_v4(self, project_id: str) -> ProjectDetails | None:
        """Learn a project's type and name once; ``None`` means try again next poll."""
        try:
            body = await v4.call(
                self._transport,
                "DescribeProject",
                {"id": project_id},
                max_response_bytes=v4.project_answer_bytes(self._transport),
            )
            details = v4.parse_project(project_id, body)
        except OmsError as error:
            if is_transient(error):
                return None
            details = ProjectDetails(project_id=project_id)
        self._v4_details[project_id] = details
        return details

    async def fetch_steps(self, project_id: str) -> tuple[Step, ...] | None:
        """Per-step details on 4.x; None where the API has no such call (3.3).

        An OMS without the Action raises OmsActionUnavailable (or OmsApiError with its
        ``code``, e.g. PARAM_ERROR); a missing project raises OmsProjectNotFound.
        """
        if self._server != "v4":
            return None
        body = await v4.call(self._transport, "DescribeProjectSteps", {"id": project_id})
        steps, dropped = v4.parse_steps_counted(body)
        self._observe_steps(steps, dropped)
        return steps

    def _observe_steps(self, steps: tuple[Step, ...], dropped: int) -> None:
        if dropped:
            self._observer.dropped_steps(dropped)
        for step in steps:
            if step.checkpoint_sample is not None and step.checkpoint_sample.from_milliseconds:
                self._observer.checkpoint_converted()

    async def fetch_verification(self, project_id: str) -> FullVerification | None:
        """The full verification's result on 4.x, every table paged through; None on 3.3.

        Raises like fetch_steps: an OMS without the Action answers OmsActionUnavailable (or
        OmsApiError PARAM_ERROR), a missing project OmsProjectNotFound.
        """
        if self._server != "v4":
            return None
        return await v4.fetch_verification(self._transport, project_id)

    async def list_projects(self, settings: DiscoveryFilter) -> list[ListedProject]:
        """Discover projects, with their steps where listed; DiscoveryUnavailable on 3.3."""
        if self._server == "v3":
            raise DiscoveryUnavailable(_NO_DISCOVERY)
        try:
            projects = await discovery.list_projects(self._transport, settings, self._paging)
        except OmsHttpError as error:
            if self._server is None and error.status in _WRONG_API_STATUSES:
                self._learn("v3")
                raise DiscoveryUnavailable(_NO_DISCOVERY) from None
            raise
        self._learn("v4")
        self.remember([project.details for project in projects])
        for project in projects:
            if project.steps is not None:
                self._observe_steps(project.steps, project.dropped_steps)
        return projects

    async def prefetch(
        self,
        project_ids: list[str],
        on_listed: Callable[[dict[str, tuple[Step, ...] | None]], None],
    ) -> None:
        """Learn many configured projects' details (and steps) from ListProjects pages.

        150 projects a page instead of a DescribeProject and a DescribeProjectSteps each.
        ``on_listed`` is given each page's projects (ID -> listed steps) once their details
        are known here, so their progress can be asked while the next page is listed.
        Their alarm state is not kept: it would go stale, as the listing is not repeated.
        Raises like list_projects; on 3.3 (no ListProjects) lists nothing.
        """
        if self._server == "v3" or self._choice in ("v3-migration", "v3-sync"):
            return

        def page(listed: list[ListedProject]) -> None:
            self._learn("v4")
            self.remember([replace(project.details, alarming=None) for project in listed])
            for project in listed:
                if project.steps is not None:
                    self._observe_steps(project.steps, project.dropped_steps)
            on_listed({project.details.project_id: project.steps for project in listed})

        try:
            await discovery.list_projects(
                self._transport,
                DiscoveryFilter(),
                self._paging,
                wanted=frozenset(project_ids),
                on_page=page,
            )
        except OmsHttpError as error:
            if self._server is None and error.status in _WRONG_API_STATUSES:
                self._learn("v3")
                return
            raise

    async def _fetch_v3(self, project_id: str) -> ProjectProgress:
        if self._choice in ("v3-migration", "v3-sync"):
            return await v3.fetch(self._transport, Api(self._choice), project_id)
        known = self._v3_apis.get(project_id)
        if known is not None:
            return await v3.fetch(self._transport, known, project_id)
        try:
            progress = await v3.fetch(self._transport, Api.V3_MIGRATION, project_id)
        except OmsError as error:
            if not _wrong_path(error):
                raise
            progress = await v3.fetch(self._transport, Api.V3_SYNC, project_id)
        self._v3_apis[project_id] = progress.api
        return progress
