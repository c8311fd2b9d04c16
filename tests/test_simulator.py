"""The built-in OMS simulator, asked over real HTTP on 127.0.0.1 like the exporter asks OMS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from oms_exporter.model import Reason
from oms_exporter.oms.client import ApiChoice, ClientObserver, OmsClient
from oms_exporter.oms.discovery import DiscoveryFilter
from oms_exporter.oms.errors import (
    OmsActionUnavailable,
    OmsError,
    OmsHttpError,
    OmsProjectNotFound,
)
from oms_exporter.oms.httpclient import HttpClient
from oms_exporter.oms.transport import Transport, make_session
from oms_exporter.readiness import assess
from oms_exporter.simulator import SimulatorConfig, create_app, scenario
from oms_exporter.simulator.cli import build_parser, start_simulator
from oms_exporter.simulator.state import STATE
from tests.oms_replay import assert_encodable

AUTH = {"Authorization": aiohttp.encode_basic_auth("admin", "oms-demo")}
PROGRESS = "/api/v2?Action=DescribeProjectProgress"
START = 1_700_000_000.0
ENVELOPE = {
    "success",
    "code",
    "message",
    "advice",
    "requestId",
    "pageNumber",
    "pageSize",
    "totalCount",
    "cost",
    "data",
}
V4_FIELDS = {
    "projectId",
    "status",
    "alarmLevel",
    "enableIncrSync",
    "currentStep",
    "incrSyncCheckpoint",
    "enableStructTransfer",
    "enableFullTransfer",
    "structTransferProgress",
    "fullTransferProgress",
    "enableReverseIncrTransfer",
    "reverseIncrTransferCheckpoint",
}
V3_MIGRATION_FIELDS = {
    "status",
    "importance",
    "enableStructMigration",
    "enableFullMigration",
    "enableIncrSync",
    "enableReverseIncrSync",
    "currentStep",
    "structMigrationProgress",
    "fullMigrationProgress",
    "incrSyncCheckpoint",
    "reverseIncrSyncCheckpoint",
}
V3_SYNC_FIELDS = {
    "status",
    "importance",
    "enableStructSync",
    "enableFullSync",
    "enableIncrSync",
    "currentStep",
    "structSyncProgress",
    "fullSyncProgress",
    "incrSyncCheckpoint",
}

Client = TestClient[Any, Any]
MakeSim = Callable[..., Awaitable[Client]]


class FakeClock:
    """A clock the test moves by hand, so no test sleeps through a lifecycle."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient, clock: FakeClock) -> MakeSim:
    async def make(**overrides: Any) -> Client:
        config = SimulatorConfig(**{"clock": clock, **overrides})
        return await aiohttp_client(create_app(config))

    return make


@pytest.fixture
async def v4(make_sim: MakeSim) -> Client:
    return await make_sim(api="v4")


@pytest.fixture
async def v3(make_sim: MakeSim) -> Client:
    return await make_sim(api="v3")


async def call(client: Client, action: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(f"/api/v2?Action={action}", json=body, headers=AUTH)
    assert resp.status == 200
    answer: dict[str, Any] = await resp.json()
    return answer


async def progress(client: Client, project_id: str) -> dict[str, Any]:
    return await call(client, "DescribeProjectProgress", {"id": project_id})


async def v3_progress(client: Client, kind: str, project_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/omsp/v2/{kind}/{project_id}/progress", headers=AUTH)
    assert resp.status == 200
    answer: dict[str, Any] = await resp.json()
    return answer


async def admin(client: Client, path: str, body: dict[str, Any], status: int = 200) -> Any:
    resp = await client.post(f"/_sim/{path}", json=body)
    assert resp.status == status, await resp.text()
    return await resp.json() if status < 300 else None


# --- field names per flavour -------------------------------------------------------------


async def test_v4_progress_speaks_the_4x_field_names(v4: Client) -> None:
    answer = await progress(v4, "np_demo_migration")
    assert set(answer) == ENVELOPE | {"errorDetail"}
    assert answer["success"] is True
    assert answer["cost"].endswith(" ms")
    assert set(answer["data"]) == V4_FIELDS
    assert answer["data"]["projectId"] == "np_demo_migration"
    assert answer["data"]["alarmLevel"] == "HIGH"


async def test_v3_migration_progress_speaks_the_33_migration_field_names(v3: Client) -> None:
    answer = await v3_progress(v3, "migrations", "np_demo_migration")
    assert set(answer) == ENVELOPE
    assert set(answer["data"]) == V3_MIGRATION_FIELDS
    assert answer["data"]["currentStep"] == "PRE_CHECK"
    assert answer["data"]["incrSyncCheckpoint"] == 0


async def test_v3_sync_progress_sends_the_checkpoint_as_a_string(v3: Client) -> None:
    data = (await v3_progress(v3, "sync", "np_demo_sync"))["data"]
    assert set(data) == V3_SYNC_FIELDS
    assert data["currentStep"] == "CONNECTOR_INCR_SYNC"
    assert isinstance(data["incrSyncCheckpoint"], str)
    assert START - 90 <= int(data["incrSyncCheckpoint"]) <= START - 2


async def test_v3_project_asked_on_the_other_kinds_path_is_not_found(v3: Client) -> None:
    answer = await v3_progress(v3, "sync", "np_demo_migration")
    assert answer["success"] is False
    assert answer["code"] == "PROJECT_NOT_FOUND_ERROR"
    answer = await v3_progress(v3, "migrations", "np_demo_sync")
    assert answer["code"] == "PROJECT_NOT_FOUND_ERROR"


async def test_v3_answers_the_4x_path_with_nginx_html_404(v3: Client) -> None:
    resp = await v3.post(PROGRESS, json={"id": "np_demo_migration"}, headers=AUTH)
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "nginx" in await resp.text()


async def test_unknown_action_and_missing_id_are_param_errors(v4: Client) -> None:
    answer = await call(v4, "StopProject", {"id": "np_demo_migration"})
    assert (answer["success"], answer["code"]) == (False, "PARAM_ERROR")
    answer = await call(v4, "DescribeProjectProgress", {})
    assert answer["code"] == "PARAM_ERROR"


async def test_unknown_project_is_a_business_error_with_http_200(v4: Client) -> None:
    answer = await progress(v4, "np_nope")
    assert answer["success"] is False
    assert answer["code"] == "GHANA-PROJECT000001"
    assert "does not exist" in answer["message"]
    assert answer["errorDetail"]["code"] == "GHANA-PROJECT000001"


async def test_describe_project_lists_name_type_labels_and_endpoints(v4: Client) -> None:
    data = (await call(v4, "DescribeProject", {"id": "np_demo_sync"}))["data"]
    assert data["id"] == "np_demo_sync"
    assert data["type"] == "SYNC"
    assert data["status"] == "RUNNING"
    assert data["labels"] == [{"id": data["labels"][0]["id"], "name": "demo"}]
    assert (data["sourceEndpointType"], data["sinkEndpointType"]) == ("MYSQL", "KAFKA")


async def test_describe_steps_reports_row_counts_of_the_full_transfer(
    v4: Client, clock: FakeClock
) -> None:
    clock.advance(100)  # half-way through FULL_TRANSFER
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_migration"}))["data"]
    names = [s["name"] for s in steps]
    assert names[:3] == ["TRANSFER_PRECHECK", "STRUCT_TRANSFER", "FULL_TRANSFER"]
    assert [s["order"] for s in steps] == list(range(1, len(steps) + 1))
    full = steps[2]
    assert (steps[0]["status"], full["status"], steps[3]["status"]) == (
        "FINISHED",
        "RUNNING",
        "INIT",
    )
    info = full["stepInfo"]
    assert 0 < info["processedRecords"] < info["capacity"]
    assert info["srcRps"] > 0
    assert info["dstRps"] > 0


# --- auth and health ---------------------------------------------------------------------


async def test_health_answers_without_auth(v4: Client) -> None:
    resp = await v4.get("/oms/health")
    assert resp.status == 200
    assert await resp.json() == {"success": True, "data": {"healthy": True}}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth("admin", "wrong")},
        {"Authorization": aiohttp.encode_basic_auth("root", "oms-demo")},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Bearer oms-demo"},
    ],
)
async def test_wrong_or_missing_credentials_get_401_json(
    v4: Client, headers: dict[str, str]
) -> None:
    resp = await v4.post(PROGRESS, json={"id": "np_demo_migration"}, headers=headers)
    assert resp.status == 401
    body = await resp.json()
    assert (body["success"], body["code"]) == (False, "AUTHENTICATION_ERROR")


async def test_basic_scheme_is_case_insensitive_and_spacing_tolerated(v4: Client) -> None:
    token = aiohttp.encode_basic_auth("admin", "oms-demo").split(" ", 1)[1]
    for header in (f"basic {token}", f"BASIC  {token} "):
        resp = await v4.post(
            PROGRESS, json={"id": "np_demo_sync"}, headers={"Authorization": header}
        )
        assert resp.status == 200, header


async def test_v3_paths_need_auth_too(v3: Client) -> None:
    resp = await v3.get("/api/omsp/v2/migrations/np_demo_migration/progress")
    assert resp.status == 401


async def test_configured_credentials_are_the_ones_accepted(make_sim: MakeSim) -> None:
    client = await make_sim(username="ops", password="s3cret")
    ok = await client.post(
        PROGRESS,
        json={"id": "np_demo_sync"},
        headers={"Authorization": aiohttp.encode_basic_auth("ops", "s3cret")},
    )
    assert ok.status == 200
    assert (await client.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)).status == 401


def test_password_never_shows_in_the_config_repr() -> None:
    assert "oms-demo" not in repr(SimulatorConfig())


@pytest.mark.parametrize(
    "bad", [{"api": "v5"}, {"scenario": "x"}, {"time_scale": 0}, {"fault_rate": 2.0}]
)
def test_config_refuses_what_it_cannot_simulate(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        SimulatorConfig(**bad)


# --- lifecycle and clock -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "steps"),
    [
        ("v4", ["TRANSFER_PRECHECK", "STRUCT_TRANSFER", "FULL_TRANSFER", "INCR_TRANSFER"]),
        ("v3", ["PRE_CHECK", "STRUCT_MIGRATION", "FULL_MIGRATION", "INCR_SYNC"]),
    ],
)
async def test_clock_moves_a_migration_through_its_steps(
    make_sim: MakeSim, clock: FakeClock, api: str, steps: list[str]
) -> None:
    client = await make_sim(api=api)

    async def data() -> dict[str, Any]:
        if api == "v4":
            answer = await progress(client, "np_demo_migration")
        else:
            answer = await v3_progress(client, "migrations", "np_demo_migration")
        found: dict[str, Any] = answer["data"]
        return found

    struct = "structTransferProgress" if api == "v4" else "structMigrationProgress"
    full = "fullTransferProgress" if api == "v4" else "fullMigrationProgress"
    reverse = "reverseIncrTransferCheckpoint" if api == "v4" else "reverseIncrSyncCheckpoint"
    seen = await data()
    assert (seen["currentStep"], seen[struct], seen["incrSyncCheckpoint"]) == (steps[0], 0, 0)
    clock.advance(30)
    seen = await data()
    assert seen["currentStep"] == steps[1]
    assert 0 < seen[struct] < 100
    assert seen[full] == 0
    clock.advance(70)
    seen = await data()
    assert (seen["currentStep"], seen[struct]) == (steps[2], 100)
    assert 0 < seen[full] < 100
    assert seen["incrSyncCheckpoint"] == 0
    clock.advance(70)
    seen = await data()
    assert (seen["currentStep"], seen[full]) == (steps[3], 100)
    assert clock.now - 90 <= seen["incrSyncCheckpoint"] <= clock.now - 2
    assert seen[reverse] == 0
    clock.advance(120)
    seen = await data()
    assert seen["currentStep"] in ("TRANSFER_APP_SWITCH", "APP_SWITCH")
    assert seen["status"] == "RUNNING"
    assert clock.now - 90 <= seen["incrSyncCheckpoint"] <= clock.now - 2
    assert clock.now - 10 <= seen[reverse] <= clock.now


async def test_time_scale_speeds_the_lifecycle_up(make_sim: MakeSim, clock: FakeClock) -> None:
    client = await make_sim(time_scale=10.0)
    clock.advance(17)  # 170 lifecycle seconds: past the full transfer
    assert (await progress(client, "np_demo_migration"))["data"]["currentStep"] == "INCR_TRANSFER"


async def test_demo_projects_show_each_situation(v4: Client, clock: FakeClock) -> None:
    clock.advance(5)
    failed = (await progress(v4, "np_demo_failed"))["data"]
    assert (failed["status"], failed["currentStep"], failed["fullTransferProgress"]) == (
        "FAILED",
        "FULL_TRANSFER",
        42,
    )
    suspended = (await progress(v4, "np_demo_suspended"))["data"]
    assert suspended["status"] == "SUSPEND"
    assert clock.now - suspended["incrSyncCheckpoint"] > 600  # frozen, so lag only grows
    finished = (await progress(v4, "np_demo_finished"))["data"]
    assert finished["status"] == "FINISHED"
    assert (finished["structTransferProgress"], finished["fullTransferProgress"]) == (100, 100)
    assert finished["enableIncrSync"] is False
    sybase = (await progress(v4, "np_demo_sybase"))["data"]
    assert sybase["incrSyncCheckpoint"] == "100,30"
    sync = (await progress(v4, "np_demo_sync"))["data"]
    assert (sync["status"], sync["currentStep"]) == ("RUNNING", "INCR_TRANSFER")


def test_lag_waves_between_2_and_90_seconds_and_one_project_spikes() -> None:
    steady = scenario.ProjectDef("p", "p", "migration")
    lags = [scenario.lag_seconds(steady, t) for t in range(0, 1200, 7)]
    assert 2.0 <= min(lags) < 5.0
    assert 85.0 < max(lags) <= 90.0
    spiky = next(p for p in scenario.demo_projects() if p.spiky)
    assert max(scenario.lag_seconds(spiky, t) for t in range(0, 1800, 5)) > 300


def test_bulk_projects_are_stable_and_mixed() -> None:
    projects = scenario.bulk_projects(300)
    assert projects[0].id == "p_sim_000001"
    assert projects == scenario.bulk_projects(300)
    assert {p.kind for p in projects} == {"migration", "sync"}
    assert {p.status for p in projects} >= {None, "FAILED", "SUSPEND"}


# --- ListProjects ------------------------------------------------------------------------


async def test_list_projects_pages_through_every_project(make_sim: MakeSim) -> None:
    client = await make_sim(scenario="bulk", projects=23)
    ids: list[str] = []
    for page in (1, 2, 3):
        answer = await call(client, "ListProjects", {"pageNumber": page, "pageSize": 10})
        assert (answer["totalCount"], answer["pageNumber"], answer["pageSize"]) == (23, page, 10)
        ids += [p["id"] for p in answer["data"]]
    assert ids == [f"p_sim_{i:06d}" for i in range(1, 24)]
    assert (await call(client, "ListProjects", {"pageNumber": 4, "pageSize": 10}))["data"] == []


async def test_list_projects_clamps_page_size_to_150(make_sim: MakeSim) -> None:
    client = await make_sim(scenario="bulk", projects=200)
    answer = await call(client, "ListProjects", {"pageSize": 1000})
    assert (answer["pageSize"], len(answer["data"]), answer["totalCount"]) == (150, 150, 200)


async def test_list_projects_filters_by_type_status_and_search_key(v4: Client) -> None:
    syncs = await call(v4, "ListProjects", {"type": "SYNC", "pageSize": 50})
    assert {p["id"] for p in syncs["data"]} == {"np_demo_sync", "np_demo_sybase"}
    assert syncs["totalCount"] == 2
    failed = await call(v4, "ListProjects", {"status": "FAILED"})
    assert [p["id"] for p in failed["data"]] == ["np_demo_failed"]
    found = await call(v4, "ListProjects", {"searchKey": "LEDGER"})
    assert [p["id"] for p in found["data"]] == ["np_demo_sybase"]


# --- faults --------------------------------------------------------------------------------


async def set_fault(client: Client, fault: str, **extra: Any) -> None:
    await admin(client, "projects/np_demo_sync", {"fault": fault, **extra})


async def hanging_count(client: Client) -> int:
    count: int = (await (await client.get("/_sim/requests")).json())["hanging"]
    return count


async def wait_for_hanging(client: Client, expected: int) -> None:
    for _ in range(100):
        if await hanging_count(client) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {expected} hanging requests")


async def test_hang_never_answers_until_the_client_gives_up(v4: Client) -> None:
    await set_fault(v4, "hang")
    request = asyncio.create_task(
        v4.post(
            PROGRESS,
            json={"id": "np_demo_sync"},
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    )
    await wait_for_hanging(v4, 1)
    with pytest.raises(asyncio.TimeoutError):
        await request
    await wait_for_hanging(v4, 0)  # the abandoned request was cancelled, not leaked
    assert (await progress(v4, "np_demo_migration"))["success"] is True


async def test_slow_answers_after_the_configured_delay(v4: Client) -> None:
    await set_fault(v4, "slow", slow_seconds=0.2)
    started = time.monotonic()
    answer = await progress(v4, "np_demo_sync")
    assert time.monotonic() - started >= 0.2
    assert answer["success"] is True


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("http_500", 500, "text/plain"),
        ("http_502_html", 502, "text/html"),
        ("broken_json", 200, "application/json"),
    ],
)
async def test_transport_faults_break_the_http_answer(
    v4: Client, fault: str, status: int, content_type: str
) -> None:
    await set_fault(v4, fault)
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)
    assert (resp.status, resp.content_type) == (status, content_type)
    with pytest.raises(json.JSONDecodeError):
        json.loads(await resp.text())


async def test_success_false_fault_answers_cm_unavailable(v4: Client) -> None:
    await set_fault(v4, "success_false")
    answer = await progress(v4, "np_demo_sync")
    assert (answer["success"], answer["code"]) == (False, "GHANA-OPERAT000001")


async def test_not_found_fault_answers_project_missing(v4: Client) -> None:
    await set_fault(v4, "not_found")
    assert (await progress(v4, "np_demo_sync"))["code"] == "GHANA-PROJECT000001"


async def test_oversized_fault_sends_megabytes_of_valid_json(v4: Client) -> None:
    await set_fault(v4, "oversized")
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)
    raw = await resp.read()
    assert len(raw) > 2 * 1024 * 1024
    assert json.loads(raw)["data"]["status"] == "RUNNING"


async def test_future_checkpoint_fault_is_an_hour_ahead(v4: Client, clock: FakeClock) -> None:
    await set_fault(v4, "future_checkpoint")
    data = (await progress(v4, "np_demo_sync"))["data"]
    assert data["incrSyncCheckpoint"] == int(clock.now) + 3600


async def test_pascal_case_fault_capitalises_every_key(v4: Client) -> None:
    await set_fault(v4, "pascal_case")
    answer = await progress(v4, "np_demo_sync")
    assert answer["Success"] is True
    assert answer["Data"]["Status"] == "RUNNING"
    assert "IncrSyncCheckpoint" in answer["Data"]


async def test_string_numbers_fault_quotes_progress_and_checkpoints(v4: Client) -> None:
    await set_fault(v4, "string_numbers")
    data = (await progress(v4, "np_demo_sync"))["data"]
    assert data["fullTransferProgress"] == "100"
    assert data["incrSyncCheckpoint"].isdigit()


async def test_out_of_range_fault_sends_the_documents_sample_values(v4: Client) -> None:
    await set_fault(v4, "out_of_range")
    data = (await progress(v4, "np_demo_sync"))["data"]
    assert (data["structTransferProgress"], data["fullTransferProgress"]) == (5151, 8897)


def outcome(status: int, raw: bytes) -> str:
    """Name what a client would make of an answer."""
    if status != 200:
        return str(status)
    try:
        return "ok" if json.loads(raw)["success"] else "success_false"
    except json.JSONDecodeError:
        return "broken_json"


async def test_fault_rate_breaks_a_seeded_share_of_requests(make_sim: MakeSim) -> None:
    async def outcomes(client: Client) -> list[str]:
        seen = []
        for _ in range(200):
            resp = await client.post(PROGRESS, json={"id": "p_sim_000001"}, headers=AUTH)
            seen.append(outcome(resp.status, await resp.read()))
        return seen

    first = await outcomes(await make_sim(scenario="bulk", projects=5, fault_rate=0.3, seed=7))
    again = await outcomes(await make_sim(scenario="bulk", projects=5, fault_rate=0.3, seed=7))
    assert first == again  # seeded: the same requests fail every run
    assert set(first) == {"ok", "500", "502", "broken_json"}
    assert 30 < len([o for o in first if o != "ok"]) < 90


async def test_down_switch_answers_503_html_until_back_up(v4: Client) -> None:
    await admin(v4, "down", {"down": True})
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)
    assert (resp.status, resp.content_type) == (503, "text/html")
    assert (await v4.get("/oms/health")).status == 503
    await admin(v4, "down", {"down": False})
    assert (await progress(v4, "np_demo_sync"))["success"] is True


# --- the control API ---------------------------------------------------------------------


async def test_admin_lists_projects_and_their_state(v4: Client) -> None:
    projects = (await (await v4.get("/_sim/projects")).json())["projects"]
    by_id = {p["id"]: p for p in projects}
    assert len(by_id) == len(scenario.demo_projects()) == 10
    assert by_id["np_demo_failed"]["status"] == "FAILED"
    assert by_id["np_demo_sybase"]["kind"] == "sync"


async def test_admin_overrides_status_step_and_lag(v4: Client, clock: FakeClock) -> None:
    await admin(
        v4,
        "projects/np_demo_sync",
        {"status": "RUNNING_ALARMING", "current_step": "SOMETHING_NEW", "lag_seconds": 123},
    )
    data = (await progress(v4, "np_demo_sync"))["data"]
    assert (data["status"], data["currentStep"]) == ("RUNNING_ALARMING", "SOMETHING_NEW")
    assert data["incrSyncCheckpoint"] == int(clock.now - 123)
    await admin(v4, "projects/np_demo_migration", {"current_step": "FULL_TRANSFER"})
    data = (await progress(v4, "np_demo_migration"))["data"]
    assert (data["currentStep"], data["fullTransferProgress"]) == ("FULL_TRANSFER", 50)
    await admin(v4, "projects/np_demo_migration", {"current_step": "INCR_TRANSFER"})
    data = (await progress(v4, "np_demo_migration"))["data"]
    assert data["currentStep"] == "INCR_TRANSFER"
    assert clock.now - 90 <= data["incrSyncCheckpoint"] <= clock.now - 2  # never ahead


async def test_admin_deleted_project_is_not_found_and_not_listed(v4: Client) -> None:
    await admin(v4, "projects/np_demo_sync", {"deleted": True})
    assert (await progress(v4, "np_demo_sync"))["code"] == "GHANA-PROJECT000001"
    listed = await call(v4, "ListProjects", {"pageSize": 50})
    assert "np_demo_sync" not in {p["id"] for p in listed["data"]}
    assert listed["totalCount"] == 9


async def test_admin_adds_a_project(v4: Client) -> None:
    await admin(v4, "projects", {"id": "np_new", "kind": "sync", "offset_seconds": 1000}, 201)
    data = (await progress(v4, "np_new"))["data"]
    assert (data["status"], data["currentStep"]) == ("RUNNING", "INCR_TRANSFER")
    await admin(v4, "projects", {"id": "np_new", "kind": "sync"}, 409)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("projects/np_demo_sync", {"fault": "gremlins"}, 400),
        ("projects/np_demo_sync", {"colour": "red"}, 400),
        ("projects/np_demo_sync", {"lag_seconds": True}, 400),
        ("projects/np_missing", {"status": "FAILED"}, 404),
        ("projects", {"id": "x", "kind": "other"}, 400),
        ("down", {"down": "yes"}, 400),
    ],
)
async def test_admin_refuses_what_it_does_not_understand(
    v4: Client, path: str, body: dict[str, Any], status: int
) -> None:
    await admin(v4, path, body, status)


async def test_admin_reset_restores_the_scenario_and_counters(v4: Client, clock: FakeClock) -> None:
    await admin(v4, "projects/np_demo_sync", {"deleted": True})
    await admin(v4, "down", {"down": True})
    clock.advance(100)
    await admin(v4, "reset", {})
    assert (await progress(v4, "np_demo_sync"))["success"] is True
    data = (await progress(v4, "np_demo_migration"))["data"]
    assert data["currentStep"] == "TRANSFER_PRECHECK"
    counters = await (await v4.get("/_sim/requests")).json()
    assert counters["total"] == 2


async def test_admin_advance_moves_lifecycles_on(v4: Client) -> None:
    await admin(v4, "advance", {"seconds": 100})
    assert (await progress(v4, "np_demo_migration"))["data"]["currentStep"] == "FULL_TRANSFER"


async def test_request_counters_count_per_path_and_project(v3: Client) -> None:
    for _ in range(3):
        await v3_progress(v3, "migrations", "np_demo_migration")
    await v3.get("/oms/health")
    counters = await (await v3.get("/_sim/requests")).json()
    assert counters["paths"]["/api/omsp/v2/migrations/np_demo_migration/progress"] == 3
    assert counters["paths"]["/oms/health"] == 1
    assert counters["projects"] == {"np_demo_migration": 3}
    assert counters["total"] == 4


async def test_request_total_is_the_cheap_counter_benchmarks_watch(v4: Client) -> None:
    for _ in range(3):
        await progress(v4, "np_demo_sync")
    await v4.get("/_sim/requests")  # the control API itself is never counted
    assert await (await v4.get("/_sim/requests/total")).json() == {"total": 3, "hanging": 0}


# --- running it ----------------------------------------------------------------------------


async def test_start_simulator_serves_on_a_free_port() -> None:
    runner, url = await start_simulator(SimulatorConfig(scenario="bulk", projects=10))
    try:
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.post(f"{url}{PROGRESS}", json={"id": "p_sim_000010"}) as resp,
        ):
            assert (await resp.json())["data"]["projectId"] == "p_sim_000010"
    finally:
        await runner.cleanup()


def test_cli_announces_its_port_and_stops_on_sigterm() -> None:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    code = "from oms_exporter.simulator.cli import main; raise SystemExit(main())"
    args = ["--port", "0", "--api", "v3", "--scenario", "bulk", "--projects", "5"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("OMS simulator (api=v3, scenario=bulk, 5 projects) listening on ")
        url = line.rsplit(" ", 1)[1].strip()
        with urllib.request.urlopen(f"{url}/oms/health", timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read())["data"]["healthy"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


# --- hostile answers, asked by the real client ----------------------------------------------


@pytest.fixture
async def live_sim() -> AsyncIterator[str]:
    """A real simulator on 127.0.0.1:0 with the real clock, as the exporter meets it."""
    runner, url = await start_simulator(SimulatorConfig())
    yield url
    await runner.cleanup()


@pytest.fixture
async def real_client(live_sim: str) -> AsyncIterator[Callable[..., OmsClient]]:
    """Build real OMS clients (1 MiB answer cap) against the live simulator."""
    sessions: list[HttpClient] = []

    def build(observer: ClientObserver | None = None) -> OmsClient:
        session = make_session(
            base_url=live_sim, username="admin", password="oms-demo", timeout_seconds=10.0
        )
        sessions.append(session)
        transport = Transport(session=session, max_concurrency=4, max_response_bytes=1024 * 1024)
        return OmsClient(transport=transport, api="v4", oms_name="sim", observer=observer)

    yield build
    for session in sessions:
        await session.close()


@asynccontextmanager
async def simulated_client(
    config: SimulatorConfig, *, api: ApiChoice, timeout_seconds: float
) -> AsyncIterator[tuple[OmsClient, web.AppRunner]]:
    """A real simulator of this configuration and a real client (1 MiB cap) against it."""
    runner, url = await start_simulator(config)
    session = make_session(
        base_url=url, username="admin", password="oms-demo", timeout_seconds=timeout_seconds
    )
    try:
        transport = Transport(session=session, max_concurrency=4, max_response_bytes=1024 * 1024)
        yield OmsClient(transport=transport, api=api, oms_name="sim"), runner
    finally:
        await session.close()
        await runner.cleanup()


async def set_live_fault(url: str, project_id: str, fault: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_sim/projects/{project_id}", json={"fault": fault}) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def live_error(client: OmsClient, project_id: str = "np_demo_sync") -> OmsError:
    with pytest.raises(OmsError) as caught:
        await client.fetch_progress(project_id)
    return caught.value


async def test_surrogate_id_is_repaired_by_discovery(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "surrogate_id")
    projects = await real_client().list_projects(DiscoveryFilter())
    ids = {p.details.project_id for p in projects}
    assert "np_demo_sync\ufffd" in ids
    assert "np_demo_sync" not in ids
    assert_encodable(projects)


async def test_surrogate_name_is_repaired(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "surrogate_name")
    progress = await real_client().fetch_progress("np_demo_sync")
    assert progress.name == "events ob to kafka (steady sync) \ufffd"
    assert_encodable(progress)


async def test_surrogate_status_is_repaired(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "surrogate_status")
    client = real_client()
    progress = await client.fetch_progress("np_demo_sync")
    assert (progress.status, progress.raw_status) == ("UNKNOWN", "RUNNING\ufffd")
    assert progress.current_step == "UNKNOWN"
    steps = await client.fetch_steps("np_demo_sync")
    assert steps is not None
    assert {s.status for s in steps} == {"UNKNOWN"}
    assert_encodable((progress, steps))


async def test_huge_number_is_unknown(live_sim: str, real_client: Callable[..., OmsClient]) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "huge_number")
    client = real_client()
    progress = await client.fetch_progress("np_demo_sync")
    assert (progress.struct_progress_ratio, progress.full_progress_ratio) == (None, None)
    assert progress.status == "RUNNING"
    steps = await client.fetch_steps("np_demo_sync")
    assert steps is not None
    assert [s.progress_ratio for s in steps] == [None] * len(steps)


async def test_deep_nesting_is_a_decode_error_everywhere(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "deep_nesting")
    client = real_client()
    assert (await live_error(client)).reason is Reason.DECODE
    await client.fetch_progress("np_demo_migration")  # the others still answer
    with pytest.raises(OmsError) as caught:
        await client.fetch_steps("np_demo_sync")
    assert caught.value.reason is Reason.DECODE
    with pytest.raises(OmsError) as caught:
        await client.list_projects(DiscoveryFilter())
    assert caught.value.reason is Reason.DECODE


async def test_deep_error_body_is_an_http_error(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "deep_error_body")
    error = await live_error(real_client())
    assert (error.reason, str(error)) == (Reason.HTTP, "HTTP 500")


async def test_huge_total_still_lists_every_project(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "huge_total")
    projects = await real_client().list_projects(DiscoveryFilter())
    assert len(projects) == len(scenario.demo_projects())


async def test_gzip_bomb_is_refused_at_the_inflated_cap(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "gzip_bomb")
    error = await live_error(real_client())
    assert error.reason is Reason.DECODE
    assert "1048576-byte limit" in str(error)


async def test_millisecond_checkpoint_is_converted_and_counted(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "millisecond_checkpoint")
    converted: list[None] = []
    observer = ClientObserver(checkpoint_converted=lambda: converted.append(None))
    progress = await real_client(observer).fetch_progress("np_demo_sync")
    point = progress.checkpoints[0]
    assert point.from_milliseconds
    assert point.seconds is not None
    assert time.time() - 120 < point.seconds < time.time()
    assert converted == [None]


async def test_many_steps_keep_64_and_count_the_rest(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "many_steps")
    dropped: list[int] = []
    client = real_client(ClientObserver(dropped_steps=dropped.append))
    await client.fetch_progress("np_demo_sync")
    steps = await client.fetch_steps("np_demo_sync")
    assert steps is not None
    assert len(steps) == 64
    assert steps[0].name == "TRANSFER_PRECHECK"  # the real steps come first
    assert dropped == [4 + 10_000 - 64]


async def test_redirect_is_not_followed(
    live_sim: str, real_client: Callable[..., OmsClient]
) -> None:
    await set_live_fault(live_sim, "np_demo_sync", "redirect")
    error = await live_error(real_client())
    assert isinstance(error, OmsHttpError)
    assert (error.reason, error.status) == (Reason.HTTP, 302)
    assert "http://oms-elsewhere.invalid:8089/api/v2" in str(error)
    for secret in ("sim-user", "sim-secret", "sim-token"):
        assert secret not in str(error)


# --- hostile answers on the wire ------------------------------------------------------------


async def test_hostile_faults_send_what_they_say(v4: Client) -> None:
    await set_fault(v4, "surrogate_status")
    raw = await (await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)).read()
    assert b'"status":"RUNNING\\ud800"' in raw
    await set_fault(v4, "huge_number")
    raw = await (await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)).read()
    assert b'"fullTransferProgress":1' + b"0" * 400 + b"," in raw
    await set_fault(v4, "deep_nesting")
    raw = await (await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)).read()
    assert b"[" * 200_000 + b"]" * 200_000 in raw
    await set_fault(v4, "huge_total")
    answer = await v4.post("/api/v2?Action=ListProjects", json={}, headers=AUTH)
    assert b'"totalCount":1' + b"0" * 400 + b"," in await answer.read()


async def test_gzip_bomb_announces_a_small_gzip_body(v4: Client) -> None:
    await set_fault(v4, "gzip_bomb")
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert int(resp.headers["Content-Length"]) < 600_000
    resp.close()  # never inflate the 500 MB here


async def test_redirect_and_deep_error_body_faults(v4: Client) -> None:
    await set_fault(v4, "redirect")
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"].startswith("http://sim-user:sim-secret@oms-elsewhere.invalid")
    await set_fault(v4, "deep_error_body")
    resp = await v4.post(PROGRESS, json={"id": "np_demo_sync"}, headers=AUTH)
    assert resp.status == 500
    assert b"[" * 100_000 in await resp.read()


async def test_many_steps_fault_adds_ten_thousand_steps(v4: Client) -> None:
    await set_fault(v4, "many_steps")
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_sync"}))["data"]
    assert len(steps) == 4 + 10_000
    assert len({s["name"] for s in steps}) == len(steps)


async def test_millisecond_checkpoint_fault_multiplies_by_1000(
    v4: Client, clock: FakeClock
) -> None:
    await set_fault(v4, "millisecond_checkpoint")
    checkpoint = (await progress(v4, "np_demo_sync"))["data"]["incrSyncCheckpoint"]
    assert (clock.now - 90) * 1000 <= checkpoint <= clock.now * 1000


def test_every_fault_is_documented_in_the_help() -> None:
    assert set(scenario.FAULT_HELP) == scenario.FAULTS
    text = build_parser().format_help()
    assert "--fault PROJECT=FAULT" in text
    for fault in scenario.FAULTS:
        assert f"  {fault} " in text


async def test_fault_flag_sets_faults_from_the_start() -> None:
    args = build_parser().parse_args(["--fault", "np_demo_sync=redirect", "--fault", "x=y=hang"])
    assert args.fault == [("np_demo_sync", "redirect"), ("x=y", "hang")]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fault", "np_demo_sync=gremlins"])
    config = SimulatorConfig(faults=(("np_demo_sync", "redirect"),))
    runner, url = await start_simulator(config)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_sim/projects") as resp:
                listed = {p["id"]: p["fault"] for p in (await resp.json())["projects"]}
            assert listed["np_demo_sync"] == "redirect"
            async with session.post(f"{url}/_sim/reset", json={}):
                pass
            async with session.get(f"{url}/_sim/projects") as resp:
                listed = {p["id"]: p["fault"] for p in (await resp.json())["projects"]}
            assert listed["np_demo_sync"] == "redirect"  # a reset keeps the start's faults
    finally:
        await runner.cleanup()


def test_fault_for_an_unknown_project_is_refused() -> None:
    with pytest.raises(ValueError, match="no project"):
        create_app(SimulatorConfig(faults=(("np_missing", "hang"),)))
    with pytest.raises(ValueError, match="must be one of"):
        SimulatorConfig(faults=(("np_demo_sync", "gremlins"),))


# --- the real shapes of 4.x answers (issue 12) -----------------------------------------------


async def test_list_items_carry_connection_infos_a_mapping_configs_and_steps(
    make_sim: MakeSim,
) -> None:
    client = await make_sim(tables_per_project=250)
    item = (await call(client, "ListProjects", {"pageSize": 1}))["data"][0]
    assert item["id"] == "np_demo_migration"
    for side in ("sourceConnectInfo", "sinkConnectInfo"):
        assert {"host", "port", "username"} <= set(item[side])
        assert item[side]["host"].startswith("10.")
    tables = [t for db in item["transferMapping"]["databases"] for t in db["tables"]]
    assert len(tables) == 250
    assert len(item["transferMapping"]["databases"]) == 3  # up to 100 tables each
    for config in ("commonTransferConfig", "structTransferConfig", "fullTransferConfig"):
        assert isinstance(item[config], dict)
    assert item["incrTransferConfig"]["recordTypeWhiteList"] == ["INSERT", "UPDATE", "DELETE"]
    assert (item["enableFullVerify"], item["enableIncrVerify"]) == (True, True)
    assert set(item["alarmStats"]) == {
        "target",
        "alarming",
        "recentlyTriggerCount",
        "ruleToRecentlyTriggerCount",
        "alarmContent",
        "openMonitor",
    }
    assert [s["name"] for s in item["steps"]][:4] == [
        "TRANSFER_PRECHECK",
        "STRUCT_TRANSFER",
        "FULL_TRANSFER",
        "FULL_VERIFIER",
    ]
    described = (await call(client, "DescribeProject", {"id": "np_demo_migration"}))["data"]
    assert described["transferMapping"] == item["transferMapping"]


async def test_failed_project_is_alarming_in_its_alarm_stats(v4: Client) -> None:
    listed = (await call(v4, "ListProjects", {"pageSize": 50}))["data"]
    alarming = {p["id"]: p["alarmStats"]["alarming"] for p in listed}
    assert alarming["np_demo_failed"] is True
    assert alarming["np_demo_sync"] is False


async def test_full_verifier_and_incr_transfer_carry_their_step_info(
    v4: Client, clock: FakeClock
) -> None:
    clock.advance(scenario.PRECHECK_SECONDS + scenario.STRUCT_SECONDS + scenario.FULL_SECONDS + 30)
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_migration"}))["data"]
    by_name = {s["name"]: s for s in steps}
    assert [s["order"] for s in steps] == list(range(1, len(steps) + 1))
    verifier = by_name["FULL_VERIFIER"]
    assert (verifier["status"], verifier["progress"]) == ("RUNNING", 50)
    info = verifier["stepInfo"]
    assert 0 < info["processedRecords"] < info["capacity"] * 1.03
    assert info["srcIops"] == info["srcRps"] * scenario.ROW_BYTES  # bytes per second
    assert (info["srcRt"], info["dstRt"]) == (2, 4)  # milliseconds per row
    incr = by_name["INCR_TRANSFER"]["stepInfo"]
    assert incr["incrTimestampCheckpoint"] <= incr["checkpointSampleTimestamp"] <= clock.now
    assert clock.now - incr["checkpointSampleTimestamp"] < 2
    clock.advance(scenario.VERIFY_SECONDS)
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_migration"}))["data"]
    by_name = {s["name"]: s for s in steps}
    assert (by_name["FULL_VERIFIER"]["status"], by_name["FULL_VERIFIER"]["progress"]) == (
        "FINISHED",
        100,
    )
    assert by_name["TRANSFER_APP_SWITCH"]["stepInfo"] == {"checkpointSampleTimestamp": None}


async def test_projects_without_verification_list_no_verifier_step(v4: Client) -> None:
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_sync"}))["data"]
    assert "FULL_VERIFIER" not in {s["name"] for s in steps}


# --- bulk projects list 10 steps each (what a benchmark's project costs) -------------------

STEP_STATUSES = {"INIT", "RUNNING", "FAILED", "FINISHED", "SUSPEND", "MONITORING"}


def assert_ten_steps(steps: list[dict[str, Any]]) -> None:
    names = [s["name"] for s in steps]
    assert len(set(names)) == len(names) == scenario.BULK_STEP_COUNT == 10
    assert set(names) <= set(scenario.V4_STEP_ORDER)
    assert names == sorted(names, key=scenario.V4_STEP_ORDER.index)  # in OMS's order
    assert [s["order"] for s in steps] == list(range(1, 11))
    for step in steps:
        assert step["status"] in STEP_STATUSES
        assert step["description"]
        if step["status"] in ("FINISHED", "MONITORING"):
            assert step["progress"] == 100
        elif step["status"] == "INIT":
            assert step["progress"] in (0, None)  # FULL_VERIFIER reports none until it starts


async def test_every_bulk_project_describes_exactly_ten_steps(
    make_sim: MakeSim, clock: FakeClock
) -> None:
    client = await make_sim(scenario="bulk", projects=300)
    seen: set[tuple[str, str]] = set()
    for _ in range(2):  # now, and once the projects still moving have moved on
        for index in range(1, 301):
            answer = await call(client, "DescribeProjectSteps", {"id": f"p_sim_{index:06d}"})
            assert_ten_steps(answer["data"])
            seen |= {(s["name"], s["status"]) for s in answer["data"]}
        clock.advance(60)
    assert {status for _, status in seen} == STEP_STATUSES
    assert {name for name, _ in seen} == set(scenario.V4_STEP_ORDER)


async def test_bulk_list_items_carry_the_same_ten_steps(make_sim: MakeSim) -> None:
    client = await make_sim(scenario="bulk", projects=150)
    items = (await call(client, "ListProjects", {"pageSize": 150}))["data"]
    assert len(items) == 150
    for item in items:
        assert_ten_steps(item["steps"])
    for item in items[:30]:
        described = (await call(client, "DescribeProjectSteps", {"id": item["id"]}))["data"]
        assert described == item["steps"]


def bulk_steps(defn: scenario.ProjectDef, lifecycle_second: float) -> dict[str, str]:
    """A project's step statuses at one lifecycle second (started at START, time scale 1)."""
    defn = replace(defn, offset_seconds=lifecycle_second)
    snap = scenario.snapshot(defn, now=START, started_at=START, time_scale=1.0)
    steps = scenario.project_steps(defn, snap, started_at=START, time_scale=1.0)
    assert_ten_steps(steps)
    return {str(s["name"]): str(s["status"]) for s in steps}


def test_bulk_auxiliary_steps_follow_the_lifecycle() -> None:
    migration = replace(scenario.bulk_project(7), reverse=True, incr_verify=True)
    assert (migration.kind, migration.full_verify, migration.step_count) == ("migration", False, 10)
    seconds = (5.0, 12.0, 100.0, 155.0, 200.0, 230.0, 3 * 86_400.0)
    at = {t: bulk_steps(migration, t) for t in seconds}
    assert (at[5.0]["TRANSFER_PRECHECK"], at[5.0]["TRANSFER_PREPARE"]) == ("RUNNING", "INIT")
    assert at[12.0]["TRANSFER_PREPARE"] == "RUNNING"
    assert (at[100.0]["TRANSFER_INCR_LOG_PULL"], at[100.0]["INDEX_TRANSFER"]) == ("RUNNING", "INIT")
    assert (at[155.0]["FULL_TRANSFER"], at[155.0]["INDEX_TRANSFER"]) == ("RUNNING", "RUNNING")
    assert (at[200.0]["INCR_VERIFIER"], at[200.0]["REVERSE_INCR_TRANSFER"]) == (
        "MONITORING",
        "INIT",
    )
    assert at[230.0]["REVERSE_INCR_TRANSFER"] == "MONITORING"  # with the switchover
    assert at[3 * 86_400.0] == {
        "TRANSFER_PRECHECK": "FINISHED",
        "TRANSFER_PREPARE": "FINISHED",
        "STRUCT_TRANSFER": "FINISHED",
        "TRANSFER_INCR_LOG_PULL": "MONITORING",
        "FULL_TRANSFER": "FINISHED",
        "INDEX_TRANSFER": "FINISHED",
        "INCR_TRANSFER": "MONITORING",
        "INCR_VERIFIER": "MONITORING",
        "TRANSFER_APP_SWITCH": "RUNNING",
        "REVERSE_INCR_TRANSFER": "MONITORING",
    }


def test_bulk_auxiliary_steps_never_run_in_steady_state() -> None:
    """Steady projects' steps keep the RUNNING step they had: the exporter asks as often."""
    for defn in scenario.bulk_projects(300):
        if defn.offset_seconds < 86_400 or defn.status is not None:
            continue
        statuses = bulk_steps(defn, defn.offset_seconds)
        running = {name for name, status in statuses.items() if status == "RUNNING"}
        if not defn.incr:
            assert set(statuses.values()) == {"FINISHED"}
        elif defn.kind == "sync":
            assert running == {"INCR_TRANSFER"}
        else:
            assert running == {"TRANSFER_APP_SWITCH"}


def test_failed_and_suspended_bulk_projects_stop_their_running_steps() -> None:
    failed = next(p for p in scenario.bulk_projects(300) if p.status == "FAILED")
    statuses = bulk_steps(failed, failed.freeze_at_seconds or 0.0)
    assert statuses["FULL_TRANSFER"] == statuses["TRANSFER_INCR_LOG_PULL"] == "FAILED"
    assert "RUNNING" not in statuses.values()
    suspended = next(p for p in scenario.bulk_projects(300) if p.status == "SUSPEND")
    statuses = bulk_steps(suspended, suspended.offset_seconds)
    assert "RUNNING" not in statuses.values()
    assert "SUSPEND" in statuses.values()


def test_step_count_is_at_most_every_step_but_the_verifier() -> None:
    with pytest.raises(ValueError, match="step_count"):
        scenario.ProjectDef("p", "p", "migration", step_count=11)
    with pytest.raises(ValueError, match="step_count"):
        scenario.ProjectDef("p", "p", "migration", step_count=0)


async def test_demo_projects_keep_their_natural_steps(v4: Client) -> None:
    counts: dict[str, int] = {}
    for defn in scenario.demo_projects():
        assert defn.step_count is None
        steps = (await call(v4, "DescribeProjectSteps", {"id": defn.id}))["data"]
        assert [s["order"] for s in steps] == list(range(1, len(steps) + 1))
        counts[defn.id] = len(steps)
    assert counts == {
        "np_demo_migration": 6,  # and FULL_VERIFIER
        "np_demo_sync": 4,
        "np_demo_failed": 5,
        "np_demo_suspended": 5,
        "np_demo_finished": 3,  # no incremental: no INCR_TRANSFER, no TRANSFER_APP_SWITCH
        "np_demo_sybase": 4,
        "np_demo_lag_spikes": 6,
        "np_demo_ready": 6,
        "np_demo_inconsistent": 6,
        "np_demo_lag_wave": 6,
    }
    steps = (await call(v4, "DescribeProjectSteps", {"id": "np_demo_migration"}))["data"]
    assert [s["name"] for s in steps] == [
        "TRANSFER_PRECHECK",
        "STRUCT_TRANSFER",
        "FULL_TRANSFER",
        "FULL_VERIFIER",
        "INCR_TRANSFER",
        "TRANSFER_APP_SWITCH",
    ]


async def test_without_action_answers_as_an_older_oms(make_sim: MakeSim) -> None:
    client = await make_sim(without_actions=("DescribeProjectSteps",))
    answer = await call(client, "DescribeProjectSteps", {"id": "np_demo_sync"})
    assert (answer["success"], answer["code"], answer["data"]) == (False, "PARAM_ERROR", None)
    assert answer["errorDetail"]["code"] == "PARAM_ERROR"
    assert "DescribeProjectSteps" in answer["message"]
    assert (await progress(client, "np_demo_sync"))["success"] is True


def test_without_action_and_tables_flags() -> None:
    args = build_parser().parse_args(
        ["--tables-per-project", "500", "--without-action", "DescribeProjectSteps"]
    )
    assert (args.tables_per_project, args.without_action) == (500, ["DescribeProjectSteps"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--without-action", "StopProject"])
    with pytest.raises(ValueError, match="without_actions"):
        SimulatorConfig(without_actions=("StopProject",))
    with pytest.raises(ValueError, match="tables_per_project"):
        SimulatorConfig(tables_per_project=-1)


async def test_real_client_tells_a_missing_action_from_a_missing_project() -> None:
    async with simulated_client(
        SimulatorConfig(without_actions=("DescribeProjectSteps",)), api="v4", timeout_seconds=10.0
    ) as (client, _runner):
        await client.fetch_progress("np_demo_sync")
        with pytest.raises(OmsActionUnavailable) as caught:
            await client.fetch_steps("np_demo_sync")
        assert caught.value.code == "PARAM_ERROR"
        with pytest.raises(OmsProjectNotFound):
            await client.fetch_progress("np_gone")


async def test_real_client_discovers_large_projects_with_the_default_cap() -> None:
    """150 projects of 400 tables: a page of about 7 MB, a 1 MiB answer cap."""
    config = SimulatorConfig(scenario="bulk", projects=160, tables_per_project=400)
    async with simulated_client(config, api="auto", timeout_seconds=30.0) as (client, runner):
        projects = await client.list_projects(DiscoveryFilter())
        assert len(projects) == 160
        assert {p.details.alarming for p in projects} == {True, False}
        assert any(p.details.full_verify for p in projects)
        assert all(p.steps is not None and len(p.steps) == 10 for p in projects)
        assert runner.app[STATE].paths["/api/v2?Action=ListProjects"] == 2


# --- full verification and the cut-over demo ------------------------------------------------
FULL_END = scenario.PRECHECK_SECONDS + scenario.STRUCT_SECONDS + scenario.FULL_SECONDS


async def verify(client: Client, project_id: str, **body: Any) -> dict[str, Any]:
    return await call(client, "ListProjectFullVerifyResult", {"projectId": project_id, **body})


def tables_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    tables: list[dict[str, Any]] = answer["data"]["fullVerifyTableStatistics"]
    return tables


async def test_verification_follows_the_verifier_table_by_table(
    v4: Client, clock: FakeClock
) -> None:
    before = await verify(v4, "np_demo_migration")
    assert before["data"] == {"differentNumber": None, "fullVerifyTableStatistics": []}
    clock.advance(FULL_END + scenario.VERIFY_SECONDS / 2)
    halfway = tables_of(await verify(v4, "np_demo_migration", pageSize=150))
    assert [t["status"] for t in halfway] == ["FINISHED"] * 4 + ["RUNNING"] * 4
    assert [t["resultType"] for t in halfway] == ["CONSISTENT"] * 4 + ["RUNNING"] * 4
    assert [t["progress"] for t in halfway] == ["100"] * 4 + ["0"] * 4  # strings, in percent
    assert set(halfway[0]) == {
        "sourceTableName", "sourceSchemaName", "destSchemaName", "sourceOnlyCount",
        "destOnlyCount", "mismatchedCount", "consistentCount", "progress", "message", "status",
        "resultType", "resultDesc", "errorDetails",
    }  # fmt: skip
    clock.advance(scenario.VERIFY_SECONDS)
    done = await verify(v4, "np_demo_migration", pageSize=150)
    assert done["data"]["differentNumber"] == 0
    assert {(t["status"], t["resultType"]) for t in tables_of(done)} == {("FINISHED", "CONSISTENT")}


async def test_inconsistent_verification_pages_and_filters_as_asked(v4: Client) -> None:
    page = await verify(v4, "np_demo_inconsistent", pageNumber=3, pageSize=3)
    assert (page["pageNumber"], page["pageSize"], page["totalCount"]) == (3, 3, 8)
    assert [t["sourceTableName"] for t in tables_of(page)] == ["table_00006", "table_00007"]
    every = tables_of(await verify(v4, "np_demo_inconsistent", pageSize=500))
    assert len(every) == 8  # pageSize clamped to 150
    different = sum(t["mismatchedCount"] + t["sourceOnlyCount"] + t["destOnlyCount"] for t in every)
    assert different == page["data"]["differentNumber"] == scenario.INCONSISTENT_ROWS
    assert [t["resultType"] for t in every].count("INCONSISTENT") == 2
    # ODC's filters: schemas and statuses.
    assert len(tables_of(await verify(v4, "np_demo_inconsistent", sourceSchemas=["db_000"]))) == 8
    assert tables_of(await verify(v4, "np_demo_inconsistent", destSchemas=["other"])) == []
    assert tables_of(await verify(v4, "np_demo_inconsistent", status=["RUNNING"])) == []
    assert (await verify(v4, "np_demo_inconsistent", status=[1]))["code"] == "PARAM_ERROR"


async def test_verification_needs_a_project_id_and_a_known_project(make_sim: MakeSim) -> None:
    client = await make_sim()
    answer = await call(client, "ListProjectFullVerifyResult", {"id": "np_demo_ready"})
    assert (answer["success"], answer["code"]) == (False, "PARAM_ERROR")
    assert (await verify(client, "np_nope"))["code"] == "GHANA-PROJECT000001"
    older = await make_sim(without_actions=("ListProjectFullVerifyResult",))
    answer = await verify(older, "np_demo_ready")
    assert (answer["success"], answer["code"]) == (False, "PARAM_ERROR")
    assert "ListProjectFullVerifyResult" in answer["message"]


async def test_demo_migrations_become_ready_stay_inconsistent_and_lag_in_waves(
    clock: FakeClock,
) -> None:
    """What `oms-exporter cutover` and /metrics judge, at the moments the demo promises."""
    async with simulated_client(SimulatorConfig(clock=clock), api="v4", timeout_seconds=10.0) as (
        client,
        _runner,
    ):

        async def blockers(project_id: str) -> tuple[str, ...]:
            progress = await client.fetch_progress(project_id)
            steps = await client.fetch_steps(project_id)
            result = await client.fetch_verification(project_id)
            progress = replace(progress, steps=steps, verification=result)
            now = clock.now
            readiness = assess(
                progress, up=True, last_success_seconds=now, now=now, interval_seconds=30
            )
            return readiness.blockers

        assert await blockers("np_demo_inconsistent") == ("verification_inconsistent",)
        assert await blockers("np_demo_lag_wave") == ()
        assert "full" in await blockers("np_demo_ready")
        clock.advance(179)  # verifier at 98 %, incremental still catching up
        assert await blockers("np_demo_ready") == ("verification_running", "incr_not_running")
        clock.advance(2)
        assert await blockers("np_demo_ready") == ()
        assert await blockers("np_demo_lag_wave") == ("lag",)  # about 60 s behind
        clock.advance(500 - 181)
        assert await blockers("np_demo_lag_wave") == ()  # back below 30 s
        assert await blockers("np_demo_ready") == ()
        assert await blockers("np_demo_inconsistent") == ("verification_inconsistent",)


async def test_verification_data_faults(v4: Client) -> None:
    await admin(v4, "projects/np_demo_inconsistent", {"fault": "surrogate_name"})
    (first, *_) = tables_of(await verify(v4, "np_demo_inconsistent"))
    assert first["sourceTableName"] == f"table_00000{scenario.SURROGATE}"
    await admin(v4, "projects/np_demo_inconsistent", {"fault": "huge_number"})
    resp = await v4.post(
        "/api/v2?Action=ListProjectFullVerifyResult",
        json={"projectId": "np_demo_inconsistent"},
        headers=AUTH,
    )
    assert str(scenario.HUGE_NUMBER).encode() in await resp.read()
