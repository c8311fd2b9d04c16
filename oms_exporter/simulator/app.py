"""The simulated OMS as an aiohttp application: auth, both API flavours and the faults.

The state lives in `state`, the answer shapes in `render`, the `/_sim/` control API in
`admin`; this module routes a request to its answer and acts out the project's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from oms_exporter.simulator import scenario
from oms_exporter.simulator.admin import admin_routes
from oms_exporter.simulator.project import project_info
from oms_exporter.simulator.render import (
    CM_UNAVAILABLE,
    OVERSIZED_BYTES,
    deep_json_response,
    envelope,
    error,
    hostile_transport,
    json_response,
    nginx_html,
    not_found,
    pascal,
    transport_fault,
    unauthorized,
)
from oms_exporter.simulator.scenario import Kind, ProjectDef, Snapshot
from oms_exporter.simulator.state import STATE, SimState, SimulatorConfig
from oms_exporter.simulator.verify import (
    MAX_PAGE_SIZE,
    VerifyQuery,
    matching_tables,
    verification_data,
)

__all__ = ["STATE", "SimState", "SimulatorConfig", "create_app"]

Render = Callable[[ProjectDef, Snapshot], object]
# Envelope fields beyond `data` (pageNumber, pageSize, totalCount) of a paged answer.
Paging = Callable[[ProjectDef, Snapshot], dict[str, object]]
VERIFY_ACTION = "ListProjectFullVerifyResult"


async def answer_project(
    request: web.Request,
    project_id: str,
    render: Render,
    *,
    kind: Kind | None = None,
    paging: Paging | None = None,
) -> web.Response:
    """Answer one project's question, acting out the project's fault if it has one."""
    state = request.app[STATE]
    state.per_project[project_id] += 1
    defn = state.projects.get(project_id)
    if defn is None or defn.deleted or defn.fault == "not_found" or kind not in (None, defn.kind):
        return not_found(state, project_id)
    fault = defn.fault
    if fault == "hang":
        state.hanging += 1
        try:  # until the server shuts down; a cancelled wait simply propagates
            await state.shutdown.wait()
        finally:
            state.hanging -= 1
        return nginx_html(503, "Service Temporarily Unavailable")
    if fault == "slow":
        with contextlib.suppress(TimeoutError):  # the server shutting down cuts it short
            await asyncio.wait_for(state.shutdown.wait(), timeout=defn.slow_seconds)
    broken = transport_fault(fault)
    if broken is None:
        broken = hostile_transport(fault)
    if broken is not None:
        return broken
    if fault == "success_false":
        return error(state, CM_UNAVAILABLE, "The CM service is unavailable, try again later.")
    code = "success" if state.config.api == "v3" and defn.kind == "migration" else None
    snap = state.snapshot(defn)
    body = envelope(state, render(defn, snap), code=code)
    if paging is not None:
        body.update(paging(defn, snap))
    if fault == "oversized":  # valid JSON, just far more of it than a progress answer needs
        body["diagnostics"] = "0123456789abcdef" * (OVERSIZED_BYTES // 16)
    if fault == "deep_nesting":
        return deep_json_response(body)
    return json_response(pascal(body) if fault == "pascal_case" else body)


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, then act as nginx (outage, unknown path), then check Basic auth."""
    path = request.path
    if path.startswith("/_sim/"):
        return await handler(request)
    state = request.app[STATE]
    state.total += 1
    action = request.query.get("Action")
    state.paths[f"{path}?Action={action}" if action is not None else path] += 1
    if state.down:
        return nginx_html(503, "Service Temporarily Unavailable")
    missing = request.match_info.http_exception
    if missing is not None:
        return nginx_html(missing.status, missing.reason)
    if path == "/oms/health":
        return await handler(request)
    if not state.authorized(request.headers.get("Authorization")):
        return unauthorized(state)
    if state.config.fault_rate and state.rng.random() < state.config.fault_rate:
        broken = transport_fault(state.rng.choice(scenario.TRANSIENT_FAULTS))
        if broken is not None:
            return broken
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """Answer the unauthenticated liveness probe."""
    return json_response({"success": True, "data": {"healthy": True}})


async def _body(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _with_clock(state: SimState, render: Callable[..., object], **extra: object) -> Render:
    def call(defn: ProjectDef, snap: Snapshot) -> object:
        now, started, scale = state.config.clock(), state.started_at, state.config.time_scale
        return render(defn, snap, now=now, started_at=started, time_scale=scale, **extra)

    return call


def _project_render(state: SimState) -> Render:
    return _with_clock(state, project_info, tables=state.config.tables_per_project)


def _renders(state: SimState) -> dict[str, Render]:
    """The 4.x Actions that describe one project, each with how its `data` is rendered."""
    api = state.config.api
    return {
        "DescribeProjectProgress": lambda defn, snap: scenario.progress_data(api, defn, snap),
        "DescribeProject": _project_render(state),
        "DescribeProjectSteps": _with_clock(state, scenario.steps_data),
    }


def v4_routes(state: SimState) -> list[web.RouteDef]:
    """Routes of a 4.x OMS; the 3.3 paths are unknown there and answer nginx's 404."""
    renders = _renders(state)  # built once: the benchmark's hot path only looks them up

    async def v4_api(request: web.Request) -> web.Response:
        """Dispatch `POST /api/v2?Action=X` the way OMS 4.x does; read-only Actions only."""
        action = request.query.get("Action", "")
        body = await _body(request)
        if action in state.config.without_actions:  # as an OMS without it answers
            return error(state, "PARAM_ERROR", f"Unsupported Action: {action}")
        if action == "ListProjects":
            return list_projects(state, body)
        if action == VERIFY_ACTION:
            return await verify_result(request, state, body)
        render = renders.get(action)
        if render is None:
            return error(state, "PARAM_ERROR", f"Unsupported Action: {action!r}")
        project_id = body.get("id")
        if not isinstance(project_id, str) or not project_id:
            return error(state, "PARAM_ERROR", "Parameter id is required")
        return await answer_project(request, project_id, render)

    return [web.post("/api/v2", v4_api)]


def _page_int(value: object, default: int) -> int | None:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        return None


def _names(value: object) -> frozenset[str] | None:
    """A filter of names: a list of strings (or one string); None if it is neither."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return None


async def verify_result(
    request: web.Request, state: SimState, body: dict[str, object]
) -> web.Response:
    """Answer ListProjectFullVerifyResult: one page of the verified tables, filtered.

    Only ``projectId`` is required (Alibaba Cloud's SDK of the same API); the schema and
    status filters ODC sends are applied when given.
    """
    project_id = body.get("projectId")
    if not isinstance(project_id, str) or not project_id:
        return error(state, "PARAM_ERROR", "Parameter projectId is required")
    number = _page_int(body.get("pageNumber"), 1)
    size = _page_int(body.get("pageSize"), 10)
    sources, dests = _names(body.get("sourceSchemas")), _names(body.get("destSchemas"))
    statuses = _names(body.get("status"))
    if number is None or size is None or sources is None or dests is None or statuses is None:
        return error(state, "PARAM_ERROR", "pageNumber, pageSize or a filter is malformed")
    query = VerifyQuery(
        page_number=max(number, 1),
        page_size=min(max(size, 1), MAX_PAGE_SIZE),
        source_schemas=sources,
        dest_schemas=dests,
        statuses=statuses,
    )
    tables = state.config.tables_per_project

    def render(defn: ProjectDef, snap: Snapshot) -> object:
        return verification_data(defn, snap, tables=tables, query=query)

    def paging(defn: ProjectDef, snap: Snapshot) -> dict[str, object]:
        total = len(matching_tables(defn, snap, tables=tables, query=query)[1])
        return {"pageNumber": query.page_number, "pageSize": query.page_size, "totalCount": total}

    return await answer_project(request, project_id, render, paging=paging)


def list_projects(state: SimState, body: dict[str, object]) -> web.Response:
    """Answer ListProjects: filter, then page (pageSize clamped to OMS's maximum of 150)."""
    number = _page_int(body.get("pageNumber"), 1)
    size = _page_int(body.get("pageSize"), 10)
    if number is None or size is None:
        return error(state, "PARAM_ERROR", "pageNumber and pageSize must be integers")
    number, size = max(number, 1), min(max(size, 1), 150)
    kind = body.get("type")
    statuses = body.get("status")
    wanted = set(statuses if isinstance(statuses, list) else [statuses] if statuses else [])
    search = str(body.get("searchKey") or "").lower()
    matches = []
    for defn in state.projects.values():
        if defn.deleted or (kind and defn.kind.upper() != kind):
            continue
        if search and search not in defn.id.lower() and search not in defn.name.lower():
            continue
        if wanted and state.snapshot(defn).status not in wanted:
            continue
        matches.append(defn)
    render = _project_render(state)
    listed = matches[(number - 1) * size : number * size]
    page = [render(d, state.snapshot(d)) for d in listed]
    huge = any(d.fault == "huge_total" for d in matches)
    total = scenario.HUGE_NUMBER if huge else len(matches)
    answer = envelope(state, page, pageNumber=number, pageSize=size, totalCount=total)
    if any(d.fault == "deep_nesting" for d in listed):
        return deep_json_response(answer)
    return json_response(answer)


def v3_routes(state: SimState) -> list[web.RouteDef]:
    """Routes of a 3.3 OMS; `/api/v2` is unknown there and answers nginx's 404."""
    render = _renders(state)["DescribeProjectProgress"]

    async def v3_progress(request: web.Request) -> web.Response:
        """Answer a 3.3 progress path; a project asked on the other kind's path is not found."""
        kind: Kind = "migration" if request.match_info["kind"] == "migrations" else "sync"
        return await answer_project(request, request.match_info["id"], render, kind=kind)

    return [web.get("/api/omsp/v2/{kind:migrations|sync}/{id}/progress", v3_progress)]


def create_app(config: SimulatorConfig) -> web.Application:
    """Build a simulated OMS answering the API flavour `config.api`, plus `/_sim/` control."""
    app = web.Application(middlewares=[gate])
    state = SimState(config)
    app[STATE] = state

    async def release_hanging(_app: web.Application) -> None:
        state.shutdown.set()

    app.on_shutdown.append(release_hanging)
    app.router.add_get("/oms/health", health)
    app.router.add_routes(v4_routes(state) if config.api == "v4" else v3_routes(state))
    app.router.add_routes(admin_routes())
    return app
