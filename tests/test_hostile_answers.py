"""Hostile OMS answers are contained in the client: a model or an OmsError, nothing else.

Each answer is a documented shape (tests/fixtures/) with one hostile change, replayed by
a real HTTP server; the client under test is the real one.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from oms_exporter.model import Api, Pool, Reason
from oms_exporter.oms import v4
from oms_exporter.oms.client import ApiChoice, ClientObserver, OmsClient
from oms_exporter.oms.discovery import MAX_SKIPPED, PAGE_SIZES, DiscoveryFilter
from oms_exporter.oms.errors import OmsError, OmsHttpError
from oms_exporter.oms.transport import Transport, make_session
from oms_exporter.selfmetrics import SelfMetrics
from tests.conftest import PASSWORD, USERNAME
from tests.oms_replay import (
    ReplayOms,
    Reply,
    assert_encodable,
    describe_project,
    fixture_json,
    progress_with,
)

MIB = 1024 * 1024
SURROGATE = "\ud800"  # valid as the JSON escape \ud800, not encodable as UTF-8
REPLACED = "\ufffd"
DEEP_MARK = "__deep__"


class Recorder:
    """A ClientObserver's callbacks, remembered."""

    def __init__(self) -> None:
        self.dropped: list[int] = []
        self.converted = 0

    def observer(self) -> ClientObserver:
        return ClientObserver(dropped_steps=self.dropped.append, checkpoint_converted=self._count)

    def _count(self) -> None:
        self.converted += 1


MakeClient = Callable[..., OmsClient]


@pytest.fixture
async def client_for(replay_url: str) -> AsyncIterator[MakeClient]:
    """Build real clients against the replaying OMS, with an observer if given."""
    sessions: list[aiohttp.ClientSession] = []

    def build(
        api: ApiChoice = "v4",
        *,
        observer: ClientObserver | None = None,
        max_response_bytes: int = MIB,
        base_url: str = replay_url,
    ) -> OmsClient:
        session = make_session(
            base_url=base_url, username=USERNAME, password=PASSWORD, timeout_seconds=10.0
        )
        sessions.append(session)
        transport = Transport(
            session=session,
            max_concurrency=4,
            max_response_bytes=max_response_bytes,
        )
        return OmsClient(transport=transport, api=api, oms_name="test", observer=observer)

    yield build
    for session in sessions:
        await session.close()


async def error_of(client: OmsClient, project_id: str = "p1") -> OmsError:
    with pytest.raises(OmsError) as caught:
        await client.fetch_progress(project_id)
    return caught.value


def with_deep(answer: dict[str, Any], depth: int) -> bytes:
    """Serialise ``answer``, putting ``depth`` nested arrays where DEEP_MARK stands."""
    nested = b"[" * depth + b"]" * depth  # json.dumps itself would recurse too deeply
    return json.dumps(answer).encode().replace(json.dumps(DEEP_MARK).encode(), nested)


def steps_answer(steps: list[dict[str, Any]]) -> dict[str, Any]:
    answer = fixture_json("v4_steps.json")
    answer["data"] = steps
    return answer


def documented_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = fixture_json("v4_steps.json")["data"]
    return steps


def list_page(items: list[dict[str, Any]], **changes: object) -> dict[str, Any]:
    """A ListProjects page as documented: totalCount counts records."""
    return {
        "success": True,
        "errorDetail": None,
        "code": None,
        "message": None,
        "requestId": "r",
        "pageNumber": 1,
        "pageSize": 150,
        "totalCount": len(items),
        "cost": "5 ms",
        "data": items,
        **changes,
    }


def list_item(project_id: str, **changes: object) -> dict[str, Any]:
    item = copy.deepcopy(fixture_json("v4_list_item.json"))
    item.update({"id": project_id, **changes})
    return item


# --- lone surrogates -----------------------------------------------------------------------


async def test_surrogate_in_a_discovered_project_id_is_repaired(
    replay: ReplayOms, client_for: MakeClient
):
    replay.listed = [
        list_item(
            f"np_{SURROGATE}1",
            name=f"orders {SURROGATE}",
            sourceEndpointType=f"MY{SURROGATE}SQL",
            labels=[{"id": "l_1", "name": f"prod{SURROGATE}"}],
        ),
        list_item("np_2"),
    ]
    projects = await client_for().list_projects(DiscoveryFilter())
    assert [p.details.project_id for p in projects] == [f"np_{REPLACED}1", "np_2"]
    assert projects[0].details.name == f"orders {REPLACED}"
    assert projects[0].details.labels == f"prod{REPLACED}"
    assert_encodable(projects)


async def test_surrogate_in_a_project_name_is_repaired(replay: ReplayOms, client_for: MakeClient):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.describe["p1"] = describe_project("p1", "SYNC", f"orders{SURROGATE}")
    progress = await client_for().fetch_progress("p1")
    assert progress.name == f"orders{REPLACED}"
    assert_encodable(progress)


async def test_surrogates_in_status_step_and_checkpoint_are_repaired(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v4["p1"] = progress_with(
        "v4_progress.json",
        status=f"RUNNING{SURROGATE}",
        currentStep=f"INCR{SURROGATE}",
        incrSyncCheckpoint=f"100,{SURROGATE}",
    )
    progress = await client_for().fetch_progress("p1")
    assert (progress.status, progress.current_step) == ("UNKNOWN", "UNKNOWN")
    assert progress.raw_status == f"RUNNING{REPLACED}"
    assert progress.checkpoints[0].raw == f"100,{REPLACED}"
    assert_encodable(progress)


async def test_surrogates_in_steps_are_repaired(replay: ReplayOms, client_for: MakeClient):
    steps = documented_steps()
    steps[0]["status"] = f"FINISHED{SURROGATE}"
    steps[1]["name"] = f"STRUCT{SURROGATE}"
    replay.steps["p1"] = Reply.json(steps_answer(steps))
    client = client_for()
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    await client.fetch_progress("p1")
    found = await client.fetch_steps("p1")
    assert found is not None
    assert (found[0].status, found[1].name) == ("UNKNOWN", "UNKNOWN")
    assert_encodable(found)


async def test_surrogates_in_an_error_answer_are_repaired(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v4["p1"] = Reply.json(
        {"success": False, "code": f"GHANA-{SURROGATE}", "message": f"broken {SURROGATE}"}
    )
    error = await error_of(client_for())
    assert error.reason is Reason.API_ERROR
    assert str(error) == f"OMS error GHANA-{REPLACED}: broken {REPLACED}"


# --- error text carries codes and short messages, never OMS's objects ------------------------


async def test_error_text_never_carries_endpoint_objects(replay: ReplayOms, client_for: MakeClient):
    endpoint = {"sourceConnectInfo": {"host": "db-prod.internal", "username": "root"}}
    replay.v4["p1"] = Reply.json(
        {"success": False, "code": endpoint, "message": endpoint, "errorDetail": endpoint}
    )
    replay.v4["p2"] = Reply.json({"code": endpoint, "message": "x"}, status=500)
    client = client_for()
    for project_id in ("p1", "p2"):
        text = str(await error_of(client, project_id))
        assert "db-prod" not in text
        assert "root" not in text
    assert str(await error_of(client, "p1")) == "OMS error no code"
    assert str(await error_of(client, "p2")) == "HTTP 500"


# --- numbers -------------------------------------------------------------------------------


async def test_huge_and_misshapen_numbers_are_unknown(replay: ReplayOms, client_for: MakeClient):
    replay.v4["p1"] = progress_with(
        "v4_progress.json",
        fullTransferProgress=10**400,
        structTransferProgress=[50],
        incrSyncCheckpoint={"seconds": 1689248064},
        reverseIncrTransferCheckpoint=1e300,
    )
    progress = await client_for().fetch_progress("p1")
    assert (progress.full_progress_ratio, progress.struct_progress_ratio) == (None, None)
    assert [c.seconds for c in progress.checkpoints] == [None, None]
    assert progress.checkpoints[0].raw == ""  # an object's text never becomes raw
    assert progress.status == "RUNNING"


async def test_step_progress_of_401_digits_is_unknown(replay: ReplayOms, client_for: MakeClient):
    steps = documented_steps()
    steps[2]["progress"] = 10**400
    steps[2]["stepInfo"]["processedRecords"] = 10**400
    steps[2]["stepInfo"]["capacity"] = 1e300
    steps[2]["stepInfo"]["srcRps"] = {"value": 5}
    replay.steps["p1"] = Reply.json(steps_answer(steps))
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    client = client_for()
    await client.fetch_progress("p1")
    found = await client.fetch_steps("p1")
    assert found is not None
    full = found[2]
    assert (full.name, full.progress_ratio) == ("FULL_TRANSFER", None)
    assert full.full_transfer is not None
    assert full.full_transfer.processed_rows is None
    assert full.full_transfer.estimated_rows is None
    assert full.full_transfer.source_rows_per_second is None
    assert full.full_transfer.sink_rows_per_second == 5000


async def test_list_projects_total_count_of_401_digits_is_unknown(
    replay: ReplayOms, client_for: MakeClient
):
    items = [list_item(f"np_{index}") for index in range(3)]
    replay.list_answer = Reply.json(list_page(items, totalCount=10**400))
    projects = await client_for().list_projects(DiscoveryFilter())
    assert [p.details.project_id for p in projects] == ["np_0", "np_1", "np_2"]
    assert replay.count(action="ListProjects") == 1  # a short page ends it, total unknown


# --- nesting -------------------------------------------------------------------------------


async def steps_error(replay: ReplayOms, client_for: MakeClient, body: bytes) -> OmsError:
    """The error asking for p1's steps gives when OMS answers ``body``."""
    replay.steps["p1"] = Reply(body)
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    client = client_for()
    await client.fetch_progress("p1")
    with pytest.raises(OmsError) as caught:
        await client.fetch_steps("p1")
    return caught.value


async def test_deeply_nested_steps_answer_is_a_decode_error(
    replay: ReplayOms, client_for: MakeClient
):
    steps = documented_steps()
    steps[2]["stepInfo"] = DEEP_MARK
    error = await steps_error(replay, client_for, with_deep(steps_answer(steps), 100_000))
    assert error.reason is Reason.DECODE
    assert "deeper than 64" in str(error)


@pytest.mark.parametrize("depth", [60, 500, 1_000])
async def test_nesting_within_the_bound_is_read(
    replay: ReplayOms, client_for: MakeClient, depth: int
):
    """Within 64 levels, and valid JSON orjson can read (up to its 1,024 levels) without
    the depth scan, which cost half the parse of every ListProjects page; nothing walks
    the parsed value."""
    steps = documented_steps()
    steps[3]["stepInfo"] = DEEP_MARK
    replay.steps["p1"] = Reply(with_deep(steps_answer(steps), depth))
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    client = client_for()
    await client.fetch_progress("p1")
    found = await client.fetch_steps("p1")
    assert found is not None
    assert len(found) == 5


async def test_nesting_beyond_the_bound_is_refused_where_json_reads(
    replay: ReplayOms, client_for: MakeClient
):
    """What orjson refuses (here a NaN) json reads, whose recursion fails near 1,000
    levels: there the 64-level bound still holds."""
    steps = documented_steps()
    steps[3]["stepInfo"] = DEEP_MARK
    steps[2]["progress"] = "__nan__"
    body = with_deep(steps_answer(steps), 200).replace(b'"__nan__"', b"NaN")
    error = await steps_error(replay, client_for, body)
    assert error.reason is Reason.DECODE
    assert "deeper than 64" in str(error)


async def test_deeply_nested_error_body_is_still_an_http_error(
    replay: ReplayOms, client_for: MakeClient
):
    body = with_deep({"success": False, "code": "INNER_ERROR", "data": DEEP_MARK}, 100_000)
    replay.v4["p1"] = Reply(body, status=500)
    error = await error_of(client_for())
    assert isinstance(error, OmsHttpError)
    assert (error.reason, error.status, str(error)) == (Reason.HTTP, 500, "HTTP 500")


async def test_list_projects_nested_200000_levels_is_a_decode_error(
    replay: ReplayOms, client_for: MakeClient
):
    items = [list_item("np_1", transferMapping=DEEP_MARK)]
    replay.list_answer = Reply(with_deep(list_page(items), 200_000))
    with pytest.raises(OmsError) as caught:
        await client_for().list_projects(DiscoveryFilter())
    assert caught.value.reason is Reason.DECODE


# --- the size cap counts inflated bytes ------------------------------------------------------


@functools.cache
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A documented progress answer padded to ``inflated_bytes``, gzipped (about 1:1000)."""
    answer = fixture_json("v4_progress.json")
    answer["data"]["padding"] = DEEP_MARK
    head, tail = json.dumps(answer).encode().split(json.dumps(DEEP_MARK).encode())
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    parts = [packer.compress(head + b'"')]
    block = b"0" * MIB
    parts += [packer.compress(block) for _ in range(inflated_bytes // MIB)]
    parts += [packer.compress(b'"' + tail), packer.flush()]
    return b"".join(parts)


async def test_gzip_bomb_is_refused_once_the_inflated_size_passes_the_cap(
    replay: ReplayOms, client_for: MakeClient
):
    bomb = gzip_bomb(64 * MIB)
    assert len(bomb) < 100 * 1024  # announced with Content-Length, far under the cap
    replay.v4["p1"] = Reply(bomb, headers={"Content-Encoding": "gzip"})
    client = client_for(max_response_bytes=MIB)
    tracemalloc.start()
    try:
        error = await error_of(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason is Reason.DECODE
    assert "1048576-byte limit" in str(error)
    assert peak < 16 * MIB  # stopped early, never held the 64 MB


async def test_gzip_bomb_on_every_list_page_ends_discovery_within_the_project_cap(
    replay: ReplayOms, client_for: MakeClient
):
    """Listings get a larger cap (v4.PROJECT_ANSWER_BYTES), still counted inflated: each
    page size is tried, then a few single projects, then the discovery fails."""
    replay.list_answer = Reply(gzip_bomb(64 * MIB), headers={"Content-Encoding": "gzip"})
    client = client_for(max_response_bytes=MIB)
    tracemalloc.start()
    try:
        with pytest.raises(OmsError) as caught:
            await client.list_projects(DiscoveryFilter())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason is Reason.DECODE
    assert f"{v4.PROJECT_ANSWER_BYTES}-byte limit" in str(caught.value)
    assert replay.count(action="ListProjects") == len(PAGE_SIZES) - 1 + MAX_SKIPPED
    assert peak < 3 * v4.PROJECT_ANSWER_BYTES  # never the 64 MB


async def test_gzip_answer_within_the_cap_is_read(replay: ReplayOms, client_for: MakeClient):
    body = gzip.compress(Reply.fixture("v4_progress.json").body)
    replay.v4["p1"] = Reply(body, headers={"Content-Encoding": "gzip"})
    assert (await client_for().fetch_progress("p1")).status == "RUNNING"


async def test_broken_gzip_is_a_decode_error(replay: ReplayOms, client_for: MakeClient):
    replay.v4["p1"] = Reply(b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert (await error_of(client_for())).reason is Reason.DECODE


# --- milliseconds --------------------------------------------------------------------------


async def test_millisecond_checkpoints_are_converted_and_counted(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v4["p1"] = progress_with(
        "v4_progress.json",
        incrSyncCheckpoint=1_700_000_000_000,
        reverseIncrTransferCheckpoint=1_700_000_000_500,
    )
    seen = Recorder()
    progress = await client_for(observer=seen.observer()).fetch_progress("p1")
    assert [c.seconds for c in progress.checkpoints] == [1_700_000_000.0, 1_700_000_000.5]
    assert all(c.from_milliseconds for c in progress.checkpoints)
    assert seen.converted == 2


async def test_millisecond_string_checkpoint_of_a_33_sync_project(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v3_sync["s1"] = progress_with(
        "v3_sync_progress.json", incrSyncCheckpoint="1700000000000"
    )
    seen = Recorder()
    progress = await client_for("v3-sync", observer=seen.observer()).fetch_progress("s1")
    assert progress.api is Api.V3_SYNC
    assert progress.checkpoints[0].seconds == 1_700_000_000.0
    assert seen.converted == 1


async def test_second_checkpoints_are_not_converted(replay: ReplayOms, client_for: MakeClient):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    seen = Recorder()
    progress = await client_for(observer=seen.observer()).fetch_progress("p1")
    assert [c.seconds for c in progress.checkpoints] == [1689248064.0, 1689248075.0]
    assert seen.converted == 0


# --- step count ----------------------------------------------------------------------------


def many_steps(count: int) -> Reply:
    steps = [
        {"order": i, "name": f"STEP_{i:05d}", "status": "RUNNING", "progress": 50}
        for i in range(count)
    ]
    return Reply.json(steps_answer(steps))


async def test_ten_thousand_steps_keep_64_and_count_the_rest(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.steps["p1"] = many_steps(10_000)
    seen = Recorder()
    client = client_for(observer=seen.observer())
    await client.fetch_progress("p1")
    found = await client.fetch_steps("p1")
    assert found is not None
    assert len(found) == 64  # v4.MAX_STEPS
    assert [s.name for s in found[:2]] == ["STEP_00000", "STEP_00001"]
    assert seen.dropped == [10_000 - 64]


async def test_self_metrics_count_dropped_steps_and_conversions(
    replay: ReplayOms, client_for: MakeClient
):
    metrics = SelfMetrics()
    replay.v4["p1"] = progress_with("v4_progress.json", incrSyncCheckpoint=1_700_000_000_000)
    replay.steps["p1"] = many_steps(100)
    client = client_for(observer=metrics.client_observer("east"))
    await client.fetch_progress("p1")
    await client.fetch_steps("p1")
    sample = metrics.registry.get_sample_value
    assert sample("oms_exporter_dropped_steps_total", {"oms": "east"}) == 36
    assert sample("oms_exporter_checkpoint_unit_conversions_total", {"oms": "east"}) == 1
    metrics.forget_oms("east")
    assert sample("oms_exporter_dropped_steps_total", {"oms": "east"}) is None
    assert sample("oms_exporter_checkpoint_unit_conversions_total", {"oms": "east"}) is None


async def test_documented_steps_drop_nothing(replay: ReplayOms, client_for: MakeClient):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.steps["p1"] = Reply.fixture("v4_steps.json")
    seen = Recorder()
    client = client_for(observer=seen.observer())
    await client.fetch_progress("p1")
    assert len(await client.fetch_steps("p1") or ()) == 5
    assert seen.dropped == []


# --- redirects -----------------------------------------------------------------------------


@pytest.fixture
async def elsewhere_url(aiohttp_server: AiohttpServer) -> str:
    """Another host that answers anything with a well-formed, different progress."""

    async def anything(_request: web.Request) -> web.Response:
        answer = fixture_json("v4_progress.json")
        answer["data"]["status"] = "FAILED"
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_another_host_is_an_http_error(
    replay: ReplayOms, client_for: MakeClient, elsewhere_url: str, status: int
):
    host_port = elsewhere_url.removeprefix("http://")
    location = f"http://spy:hunter2@{host_port}/api/v2?Action=DescribeProjectProgress&token=abc"
    replay.v4["p1"] = Reply(b"", status=status, headers={"Location": location})
    error = await error_of(client_for())
    assert isinstance(error, OmsHttpError)
    assert (error.reason, error.status) == (Reason.HTTP, status)
    assert f"http://{host_port}/api/v2" in str(error)
    for secret in ("spy", "hunter2", "token", "abc"):
        assert secret not in str(error)


async def test_relative_redirect_names_the_same_host(
    replay: ReplayOms, client_for: MakeClient, replay_url: str
):
    replay.v4["p1"] = Reply(b"", status=302, headers={"Location": "/sso/login?ticket=xyz"})
    error = await error_of(client_for())
    assert str(error) == f"HTTP 302 redirect to {replay_url}/sso/login, not followed"


async def test_redirect_without_location_is_an_http_error(
    replay: ReplayOms, client_for: MakeClient
):
    replay.v4["p1"] = Reply(b"", status=302)
    error = await error_of(client_for())
    assert (error.reason, str(error)) == (
        Reason.HTTP,
        "HTTP 302 redirect to no Location, not followed",
    )


async def test_redirect_during_detection_does_not_decide_the_api(
    replay: ReplayOms, client_for: MakeClient, elsewhere_url: str
):
    replay.everything = Reply(b"", status=302, headers={"Location": elsewhere_url + "/"})
    client = client_for("auto")
    assert (await error_of(client)).reason is Reason.HTTP
    assert client.server_api is None


def test_shared_values_are_bounded_so_unique_steps_cannot_grow_them():
    """Equal steps are one object; an OMS sending endless unique ones fills only the cap."""
    pool: Pool[str] = Pool(3)
    first = "".join(["TRANSFER_", "PRECHECK"])  # built at run time: not the literal's object
    assert pool(first) is first
    assert pool("".join(["TRANSFER_", "PRECHECK"])) is first
    for index in range(100):
        pool(f"SIM_STEP_{index}")
    late = "".join(["LATE_", "STEP"])
    assert pool(late) is late
    assert pool("".join(["LATE_", "STEP"])) is not late  # past the cap: not kept
