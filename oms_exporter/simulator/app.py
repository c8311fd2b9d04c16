"""The simulated OMS as an aiohttp application: auth, both API flavours and the faults.

Per-request work is a dict lookup, a few float operations and one json.dumps, because the
benchmark asks 10,000 projects at high request rates; nothing is logged per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from oms_exporter.simulator import scenario
from oms_exporter.simulator.scenario import Api, Kind, ProjectDef, Snapshot

Scenario = Literal["demo", "bulk"]
Render = Callable[[ProjectDef, Snapshot], object]

NOT_FOUND_V4: Final = "GHANA-PROJECT000001"
NOT_FOUND_V3: Final = "PROJECT_NOT_FOUND_ERROR"
CM_UNAVAILABLE: Final = "GHANA-OPERAT000001"
OVERSIZED_BYTES: Final = 4 * 1024 * 1024
BROKEN_JSON: Final = b'{"success":true,"errorDetail":null,"code":null,"data":{"status":"RUNN'


@dataclass(frozen=True)
class SimulatorConfig:
    """How to simulate one OMS: its API flavour, its projects, its credentials, its clock."""

    api: Api = "v4"
    scenario: Scenario = "demo"
    projects: int = 1000  # bulk scenario only
    username: str = "admin"
    password: str = field(default="oms-demo", repr=False)  # never in logs or reprs
    time_scale: float = 1.0
    fault_rate: float = 0.0
    seed: int = 0
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        """Refuse settings the simulator cannot act out, before any server starts."""
        if self.api not in ("v4", "v3"):
            raise ValueError(f"api must be v4 or v3, not {self.api!r}")
        if self.scenario not in ("demo", "bulk"):
            raise ValueError(f"scenario must be demo or bulk, not {self.scenario!r}")
        if self.projects < 0 or self.time_scale <= 0 or not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("need projects >= 0, time_scale > 0 and 0 <= fault_rate <= 1")


class SimState:
    """Everything that changes while one simulator runs: projects, switches, counters."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.baseline: tuple[ProjectDef, ...] = tuple(
            scenario.demo_projects()
            if config.scenario == "demo"
            else scenario.bulk_projects(config.projects)
        )
        self.rng = random.Random(config.seed)
        self._credentials = f"{config.username}:{config.password}".encode()
        self.shutdown = asyncio.Event()  # set on app shutdown: releases hanging requests
        self.hanging = 0
        self.seq = 0
        self.reset()

    def reset(self) -> None:
        """Restart every project's lifecycle from the scenario and forget all overrides."""
        self.projects: dict[str, ProjectDef] = {p.id: p for p in self.baseline}
        self.started_at = self.config.clock()
        self.down = False
        self.paths: Counter[str] = Counter()
        self.per_project: Counter[str] = Counter()
        self.total = 0

    def snapshot(self, defn: ProjectDef) -> Snapshot:
        """Compute a project's answer at the injected clock's now."""
        return scenario.snapshot(
            defn,
            now=self.config.clock(),
            started_at=self.started_at,
            time_scale=self.config.time_scale,
        )

    def authorized(self, header: str | None) -> bool:
        """Check HTTP Basic credentials, comparing in constant time."""
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            return False
        return hmac.compare_digest(given, self._credentials)


STATE: Final = web.AppKey("oms_simulator_state", SimState)


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


async def answer_project(
    request: web.Request, project_id: str, render: Render, *, kind: Kind | None = None
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
    if broken is not None:
        return broken
    if fault == "success_false":
        return error(state, CM_UNAVAILABLE, "The CM service is unavailable, try again later.")
    code = "success" if state.config.api == "v3" and defn.kind == "migration" else None
    body = envelope(state, render(defn, state.snapshot(defn)), code=code)
    if fault == "oversized":  # valid JSON, just far more of it than a progress answer needs
        body["diagnostics"] = "0123456789abcdef" * (OVERSIZED_BYTES // 16)
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
        body = envelope(state, None, success=False, code="AUTHENTICATION_ERROR")
        body["message"] = "Authentication failed: wrong or missing username or password"
        response = json_response(body, status=401)
        response.headers["WWW-Authenticate"] = 'Basic realm="OMS"'
        return response
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


def _render_progress(state: SimState) -> Render:
    api = state.config.api
    return lambda defn, snap: scenario.progress_data(api, defn, snap)


def _render_with_clock(state: SimState, render: Callable[..., object]) -> Render:
    def call(defn: ProjectDef, snap: Snapshot) -> object:
        now, started, scale = state.config.clock(), state.started_at, state.config.time_scale
        return render(defn, snap, now=now, started_at=started, time_scale=scale)

    return call


async def v4_api(request: web.Request) -> web.Response:
    """Dispatch `POST /api/v2?Action=X` the way OMS 4.x does; read-only Actions only."""
    state = request.app[STATE]
    action = request.query.get("Action", "")
    body = await _body(request)
    if action == "ListProjects":
        return list_projects(state, body)
    renders: dict[str, Render] = {
        "DescribeProjectProgress": _render_progress(state),
        "DescribeProject": _render_with_clock(state, scenario.project_info),
        "DescribeProjectSteps": _render_with_clock(state, scenario.steps_data),
    }
    render = renders.get(action)
    if render is None:
        return error(state, "PARAM_ERROR", f"Unsupported Action: {action!r}")
    project_id = body.get("id")
    if not isinstance(project_id, str) or not project_id:
        return error(state, "PARAM_ERROR", "Parameter id is required")
    return await answer_project(request, project_id, render)


def _page_int(value: object, default: int) -> int | None:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        return None


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
    render = _render_with_clock(state, scenario.project_info)
    page = [render(d, state.snapshot(d)) for d in matches[(number - 1) * size : number * size]]
    answer = envelope(state, page, pageNumber=number, pageSize=size, totalCount=len(matches))
    return json_response(answer)


def v4_routes() -> list[web.RouteDef]:
    """Routes of a 4.x OMS; the 3.3 paths are unknown there and answer nginx's 404."""
    return [web.post("/api/v2", v4_api)]


async def v3_progress(request: web.Request) -> web.Response:
    """Answer a 3.3 progress path; a project asked on the other kind's path is not found."""
    state = request.app[STATE]
    kind: Kind = "migration" if request.match_info["kind"] == "migrations" else "sync"
    return await answer_project(
        request, request.match_info["id"], _render_progress(state), kind=kind
    )


def v3_routes() -> list[web.RouteDef]:
    """Routes of a 3.3 OMS; `/api/v2` is unknown there and answers nginx's 404."""
    return [web.get("/api/omsp/v2/{kind:migrations|sync}/{id}/progress", v3_progress)]


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
    ]


def create_app(config: SimulatorConfig) -> web.Application:
    """Build a simulated OMS answering the API flavour `config.api`, plus `/_sim/` control."""
    app = web.Application(middlewares=[gate])
    state = SimState(config)
    app[STATE] = state

    async def release_hanging(_app: web.Application) -> None:
        state.shutdown.set()

    app.on_shutdown.append(release_hanging)
    app.router.add_get("/oms/health", health)
    app.router.add_routes(v4_routes() if config.api == "v4" else v3_routes())
    app.router.add_routes(admin_routes())
    return app
