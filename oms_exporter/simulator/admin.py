"""The unauthenticated `/_sim/` control API of tests and benchmarks: see and steer projects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from oms_exporter.simulator import scenario
from oms_exporter.simulator.render import json_response
from oms_exporter.simulator.scenario import ProjectDef
from oms_exporter.simulator.state import STATE, SimState

NoneType = type(None)
# What the control API may set on a project, with the JSON types each accepts.
OVERRIDES: Final[dict[str, tuple[type, ...]]] = {
    "status": (str, NoneType),
    "fault": (str,),
    "current_step": (str, NoneType),
    "lag_seconds": (int, float, NoneType),
    "slow_seconds": (int, float),
    "deleted": (bool,),
    "importance": (str,),
    "verify_different_rows": (int,),
}
NEW_PROJECT: Final[dict[str, tuple[type, ...]]] = OVERRIDES | {
    "name": (str,),
    "struct": (bool,),
    "full": (bool,),
    "incr": (bool,),
    "reverse": (bool,),
    "sybase": (bool,),
    "spiky": (bool,),
    "offset_seconds": (int, float),
    "source_type": (str,),
    "sink_type": (str,),
    "full_verify": (bool,),
    "incr_verify": (bool,),
}


def _fields(body: dict[str, object], allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """Check control-API fields strictly (a typo must fail the test that made it)."""
    unknown = set(body) - set(allowed)
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown fields: {sorted(unknown)}")
    for name, value in body.items():
        if type(value) not in allowed[name]:  # exact: True is not a number of seconds
            raise web.HTTPBadRequest(text=f"bad type for {name}: {value!r}")
    if body.get("fault", "none") not in scenario.FAULTS:
        raise web.HTTPBadRequest(text=f"fault must be one of {sorted(scenario.FAULTS)}")
    return body


def admin_view(state: SimState, defn: ProjectDef) -> dict[str, object]:
    """Describe a project for tests: its definition's switches and what it reports now."""
    snap = state.snapshot(defn)
    step = defn.current_step or scenario.step_name(state.config.api, defn.kind, snap.phase)
    return {
        "id": defn.id,
        "kind": defn.kind,
        "name": defn.name,
        "status": snap.status,
        "current_step": step,
        "fault": defn.fault,
        "deleted": defn.deleted,
        "lag_seconds": defn.lag_seconds,
        "full_verify": defn.full_verify,
        "verify_different_rows": defn.verify_different_rows,
        "struct_progress": snap.struct_progress,
        "full_progress": snap.full_progress,
        "checkpoint": snap.checkpoint,
        "reverse_checkpoint": snap.reverse_checkpoint,
    }


async def _object(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def sim_list(request: web.Request) -> web.Response:
    """`GET /_sim/projects`: every project and what it reports now."""
    state = request.app[STATE]
    return json_response({"projects": [admin_view(state, d) for d in state.projects.values()]})


async def sim_update(request: web.Request) -> web.Response:
    """`POST /_sim/projects/{id}`: override fields of one project (null clears)."""
    state = request.app[STATE]
    defn = state.projects.get(request.match_info["id"])
    if defn is None:
        raise web.HTTPNotFound(text="no such project")
    changes = _fields(await _object(request), OVERRIDES)
    defn = replace(defn, **changes)
    state.projects[defn.id] = defn
    return json_response(admin_view(state, defn))


async def sim_add(request: web.Request) -> web.Response:
    """`POST /_sim/projects`: add a project; `offset_seconds` places it in its lifecycle."""
    state = request.app[STATE]
    body = await _object(request)
    project_id, kind = body.pop("id", None), body.pop("kind", None)
    if not isinstance(project_id, str) or not project_id or kind not in ("migration", "sync"):
        raise web.HTTPBadRequest(text="need id (string) and kind (migration or sync)")
    if project_id in state.projects:
        raise web.HTTPConflict(text="project exists")
    changes = _fields(body, NEW_PROJECT)
    changes.setdefault("name", project_id)
    defn = ProjectDef(project_id, str(changes.pop("name")), kind, **changes)
    state.projects[project_id] = defn
    return json_response(admin_view(state, defn), status=201)


async def sim_down(request: web.Request) -> web.Response:
    """`POST /_sim/down {"down": bool}`: take the whole OMS down (503 HTML) or back up."""
    state = request.app[STATE]
    down = (await _object(request)).get("down")
    if not isinstance(down, bool):
        raise web.HTTPBadRequest(text="down must be true or false")
    state.down = down
    return json_response({"down": down})


async def sim_reset(request: web.Request) -> web.Response:
    """`POST /_sim/reset`: scenario projects, lifecycles from zero, server up, counters zero."""
    request.app[STATE].reset()
    return json_response({"reset": True})


async def sim_advance(request: web.Request) -> web.Response:
    """`POST /_sim/advance {"seconds": N}`: move every lifecycle on, for out-of-process tests."""
    state = request.app[STATE]
    seconds = (await _object(request)).get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise web.HTTPBadRequest(text="seconds must be a number")
    state.started_at -= seconds
    return json_response({"elapsed_seconds": state.config.clock() - state.started_at})


async def sim_requests(request: web.Request) -> web.Response:
    """`GET /_sim/requests`: request counters, so tests can see how hard OMS is asked."""
    state = request.app[STATE]
    return json_response(
        {
            "total": state.total,
            "paths": dict(state.paths),
            "projects": dict(state.per_project),
            "hanging": state.hanging,
        }
    )


async def sim_requests_total(request: web.Request) -> web.Response:
    """`GET /_sim/requests/total`: just the count, cheap enough to ask every 20 ms.

    The benchmark watches it to see a poll round start and end without asking the
    exporter anything; the full counters are 200 kB of JSON at 10,000 projects.
    """
    state = request.app[STATE]
    return json_response({"total": state.total, "hanging": state.hanging})


def admin_routes() -> list[web.RouteDef]:
    """The unauthenticated control API of tests and benchmarks."""
    return [
        web.get("/_sim/projects", sim_list),
        web.post("/_sim/projects", sim_add),
        web.post("/_sim/projects/{id}", sim_update),
        web.post("/_sim/down", sim_down),
        web.post("/_sim/reset", sim_reset),
        web.post("/_sim/advance", sim_advance),
        web.get("/_sim/requests", sim_requests),
        web.get("/_sim/requests/total", sim_requests_total),
    ]
