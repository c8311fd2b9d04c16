"""The OMS client against a real HTTP server replaying answers of the documented shapes."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import pytest

from oms_exporter.model import Api, Kind, Reason
from oms_exporter.oms.errors import OmsError
from tests.conftest import PASSWORD, USERNAME, ClientUnderTest
from tests.oms_replay import ReplayOms, Reply, describe_project, progress_with

MakeClient = Callable[..., ClientUnderTest]


async def reason_of(cut: ClientUnderTest, project_id: str) -> Reason:
    with pytest.raises(OmsError) as caught:
        await cut.client.fetch_progress(project_id)
    return caught.value.reason


async def test_v4_documented_answer_is_normalised(replay: ReplayOms, make_client: MakeClient):
    replay.v4["np_4w"] = Reply.fixture("v4_progress.json")
    replay.describe["np_4w"] = describe_project("np_4w", "SYNC", "orders")
    progress = await make_client().client.fetch_progress("np_4w")
    assert progress.api is Api.V4
    assert progress.kind is Kind.SYNC
    assert progress.name == "orders"
    assert progress.status == "RUNNING"
    assert progress.alarm_level == "MEDIUM"
    assert progress.current_step == "PRE_CHECK"
    assert progress.features == {
        "struct": True,
        "full": True,
        "incr": True,
        "reverse_incr": True,
        "full_verify": False,  # DescribeProject did not say
        "incr_verify": False,
    }
    assert progress.struct_progress_ratio == 1.0
    assert progress.full_progress_ratio == 1.0
    assert [(c.direction, c.seconds) for c in progress.checkpoints] == [
        ("forward", 1689248064.0),
        ("reverse", 1689248075.0),
    ]


async def test_basic_auth_is_sent(replay: ReplayOms, make_client: MakeClient):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    await make_client().client.fetch_progress("p1")
    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    assert {seen.authorization for seen in replay.seen} == {expected}


async def test_v3_server_is_detected_and_remembered(replay: ReplayOms, make_client: MakeClient):
    replay.speaks_v4 = False
    replay.v3_migration["m1"] = Reply.fixture("v3_migration_progress.json")
    replay.v3_sync["s1"] = Reply.fixture("v3_sync_progress.json")
    cut = make_client()
    migration = await cut.client.fetch_progress("m1")
    sync = await cut.client.fetch_progress("s1")
    assert (migration.api, migration.kind) == (Api.V3_MIGRATION, Kind.MIGRATION)
    assert (sync.api, sync.kind) == (Api.V3_SYNC, Kind.SYNC)
    assert cut.client.server_api == "v3"
    before = len(replay.seen)
    await cut.client.fetch_progress("m1")
    await cut.client.fetch_progress("s1")
    # Cached: one request each, straight to the right path, no more 4.x probing.
    assert [seen.path for seen in replay.seen[before:]] == [
        "/api/omsp/v2/migrations/m1/progress",
        "/api/omsp/v2/sync/s1/progress",
    ]


async def test_v3_migration_documented_answer(replay: ReplayOms, make_client: MakeClient):
    replay.v3_migration["m1"] = Reply.fixture("v3_migration_progress.json")
    progress = await make_client("v3-migration").client.fetch_progress("m1")
    assert progress.status == "INIT"
    assert progress.alarm_level == "HIGH"
    assert progress.current_step == "PRE_CHECK"
    # The document's sample progress 5151 and 8897 are clamped, never above 1.
    assert progress.struct_progress_ratio == 1.0
    assert progress.full_progress_ratio == 1.0
    assert progress.features["reverse_incr"] is False
    assert [(c.direction, c.seconds) for c in progress.checkpoints] == [("forward", 3628.0)]


async def test_v3_sync_string_checkpoint_and_sync_field_names(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v3_sync["s1"] = Reply.fixture("v3_sync_progress.json")
    progress = await make_client("v3-sync").client.fetch_progress("s1")
    assert progress.current_step == "CONNECTOR_INCR_SYNC"
    assert progress.alarm_level == "LOW"
    assert progress.struct_progress_ratio == 1.0
    assert progress.features == {
        "struct": True,
        "full": True,
        "incr": True,
        "reverse_incr": False,
        "full_verify": False,  # 3.3 has no verification flags
        "incr_verify": False,
    }
    assert [(c.direction, c.seconds) for c in progress.checkpoints] == [("forward", 1661241223.0)]


async def test_v3_sync_accepts_migration_named_progress_fields(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v3_sync["s1"] = progress_with(
        "v3_sync_progress.json",
        structSyncProgress=None,
        fullSyncProgress=None,
        structMigrationProgress=40,
        fullMigrationProgress=25,
    )
    progress = await make_client("v3-sync").client.fetch_progress("s1")
    assert progress.struct_progress_ratio == 0.4
    assert progress.full_progress_ratio == 0.25


async def test_sybase_checkpoint_keeps_other_values(replay: ReplayOms, make_client: MakeClient):
    replay.v3_sync["s1"] = progress_with("v3_sync_progress.json", incrSyncCheckpoint="100,30")
    progress = await make_client("v3-sync").client.fetch_progress("s1")
    assert progress.checkpoints[0].seconds is None
    assert progress.checkpoints[0].raw == "100,30"
    assert progress.status == "RUNNING"
    assert progress.full_progress_ratio == 1.0


async def test_pascal_case_answer_through_a_proxy(replay: ReplayOms, make_client: MakeClient):
    replay.v4["np_4w"] = Reply.fixture("v4_progress_pascal.json")
    progress = await make_client("v4").client.fetch_progress("np_4w")
    assert progress.status == "RUNNING"
    assert progress.current_step == "TRANSFER_APP_SWITCH"
    assert progress.alarm_level == "LOW"
    assert [(c.direction, c.seconds) for c in progress.checkpoints] == [("forward", 1689248064.0)]


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"status": "RUNNING_TELEPORTING"}, lambda p: p.status == "UNKNOWN"),
        ({"status": None}, lambda p: p.status == "UNKNOWN"),
        ({"currentStep": "BRAND_NEW_STEP"}, lambda p: p.current_step == "BRAND_NEW_STEP"),
        ({"currentStep": 'bad "step"\n'}, lambda p: p.current_step == "UNKNOWN"),
        ({"currentStep": None}, lambda p: p.current_step is None),
        ({"fullTransferProgress": None}, lambda p: p.full_progress_ratio is None),
        ({"fullTransferProgress": "37"}, lambda p: p.full_progress_ratio == 0.37),
        ({"fullTransferProgress": -5}, lambda p: p.full_progress_ratio == 0.0),
        ({"fullTransferProgress": "n/a"}, lambda p: p.full_progress_ratio is None),
        ({"incrSyncCheckpoint": 0}, lambda p: p.checkpoints[0].seconds is None),
        ({"incrSyncCheckpoint": None}, lambda p: p.checkpoints[0].seconds is None),
        ({"incrSyncCheckpoint": "1689248064"}, lambda p: p.checkpoints[0].seconds == 1689248064),
        ({"enableIncrSync": False}, lambda p: [c.direction for c in p.checkpoints] == ["reverse"]),
        ({"alarmLevel": "EXTREME"}, lambda p: p.alarm_level == "UNKNOWN"),
        ({"enableFullTransfer": None}, lambda p: p.features["full"] is False),
    ],
)
async def test_v4_quirks_are_tolerated(
    replay: ReplayOms, make_client: MakeClient, changes: dict[str, object], check
):
    replay.v4["p1"] = progress_with("v4_progress.json", **changes)
    progress = await make_client("v4").client.fetch_progress("p1")
    assert check(progress)


@pytest.mark.parametrize("code", ["success", None, 200])
async def test_success_is_decided_by_success_alone(
    replay: ReplayOms, make_client: MakeClient, code: object
):
    answer = {
        "success": True,
        "code": code,
        "errorDetail": {"code": "WARN", "message": "documented on a successful answer"},
        "cost": "13 ms",
        "data": {"status": "RUNNING", "currentStep": "INCR_TRANSFER"},
    }
    replay.v4["p1"] = Reply.json(answer)
    assert (await make_client("v4").client.fetch_progress("p1")).status == "RUNNING"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply.fixture("v4_not_found.json"), Reason.NOT_FOUND),
        (Reply.fixture("v4_cm_unavailable.json"), Reason.API_ERROR),
        (Reply.fixture("auth_failure.json"), Reason.AUTH),
        (Reply(b'{"success":false}', status=401), Reason.AUTH),
        (Reply(b"", status=403), Reason.AUTH),
        (Reply.fixture("proxy_502.html", status=502), Reason.HTTP),
        (Reply(b"Internal Server Error", status=500, content_type="text/plain"), Reason.HTTP),
        (Reply(b"<html><body>maintenance</body></html>", content_type="text/html"), Reason.DECODE),
        (Reply(b'{"success":true,"data":{"status":"RUNN'), Reason.DECODE),
        (Reply(b""), Reason.DECODE),
        (Reply.json([1, 2, 3]), Reason.INVALID),
        (Reply.json({"success": True, "data": None}), Reason.INVALID),
        (Reply.json({"success": True, "data": "RUNNING"}), Reason.INVALID),
        (Reply.json({"hello": "world"}), Reason.INVALID),
    ],
)
async def test_bad_answers_are_classified(
    replay: ReplayOms, make_client: MakeClient, reply: Reply, reason: Reason
):
    replay.v4["p1"] = reply
    assert await reason_of(make_client("v4"), "p1") is reason


async def test_documented_sample_without_commas_is_a_decode_error(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v3_migration["m1"] = Reply.fixture("v3_migration_doc_sample.txt")
    assert await reason_of(make_client("v3-migration"), "m1") is Reason.DECODE


async def test_project_missing_on_both_v3_paths_is_not_found(
    replay: ReplayOms, make_client: MakeClient
):
    replay.speaks_v4 = False
    cut = make_client()
    assert await reason_of(cut, "gone") is Reason.NOT_FOUND
    assert replay.count(path_part="/migrations/gone/") == 1
    assert replay.count(path_part="/sync/gone/") == 1


async def test_v4_not_found_still_identifies_a_v4_server(
    replay: ReplayOms, make_client: MakeClient
):
    cut = make_client()
    assert await reason_of(cut, "gone") is Reason.NOT_FOUND
    assert cut.client.server_api == "v4"


async def test_outage_leaves_the_api_undetected(replay: ReplayOms, make_client: MakeClient):
    replay.everything = Reply.fixture("proxy_502.html", status=502)
    cut = make_client()
    assert await reason_of(cut, "p1") is Reason.HTTP
    assert cut.client.server_api is None


async def test_hanging_request_times_out(replay: ReplayOms, make_client: MakeClient):
    replay.v4["p1"] = Reply(b"", hang=True)
    cut = make_client("v4", timeout_seconds=0.3)
    started = time.monotonic()
    assert await reason_of(cut, "p1") is Reason.TIMEOUT
    assert time.monotonic() - started < 2.0
    assert cut.observed[-1][1] is Reason.TIMEOUT


async def test_connection_refused_is_a_connection_error(make_client: MakeClient):
    from oms_exporter.oms.client import OmsClient
    from oms_exporter.oms.transport import Transport, make_session

    session = make_session(
        base_url="http://127.0.0.1:9", username="u", password="p", timeout_seconds=10.0
    )
    transport = Transport(
        session=session,
        max_concurrency=1,
        max_response_bytes=1024,
    )
    client = OmsClient(transport=transport, api="v4", oms_name="x")
    with pytest.raises(OmsError) as caught:
        await client.fetch_progress("p1")
    assert caught.value.reason is Reason.CONNECTION


async def test_oversized_answer_is_refused(replay: ReplayOms, make_client: MakeClient):
    padding = "x" * 300_000
    replay.v4["p1"] = progress_with("v4_progress.json", padding=padding)
    cut = make_client("v4", max_response_bytes=64 * 1024)
    with pytest.raises(OmsError) as caught:
        await cut.client.fetch_progress("p1")
    assert caught.value.reason is Reason.DECODE
    assert "limit" in str(caught.value)


async def test_wrong_password_never_appears_in_errors(replay: ReplayOms, make_client: MakeClient):
    replay.everything = Reply.fixture("auth_failure.json", status=401)
    with pytest.raises(OmsError) as caught:
        await make_client("v4", password="hunter2-secret").client.fetch_progress("p1")
    assert caught.value.reason is Reason.AUTH
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


async def test_concurrency_is_bounded(replay: ReplayOms, make_client: MakeClient):
    for index in range(12):
        replay.v4[f"p{index}"] = Reply(Reply.fixture("v4_progress.json").body, delay_seconds=0.05)
    cut = make_client("v4", max_concurrency=3)
    in_flight = 0
    peak = 0
    original = cut.client._transport._exchange  # count concurrency at the edge

    async def counting(*args: object) -> object:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(*args)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    cut.client._transport._exchange = counting  # type: ignore[method-assign]
    await asyncio.gather(*(cut.client.fetch_progress(f"p{i}") for i in range(12)))
    assert peak == 3


async def test_describe_project_failure_does_not_fail_the_poll(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.describe["p1"] = Reply.json({"success": False, "code": "PARAM_ERROR"})
    cut = make_client("v4")
    progress = await cut.client.fetch_progress("p1")
    assert progress.kind is Kind.UNKNOWN
    await cut.client.fetch_progress("p1")
    assert replay.count(action="DescribeProject") == 1  # remembered, not asked every poll


async def test_slow_answer_within_the_timeout_succeeds(replay: ReplayOms, make_client: MakeClient):
    replay.v4["p1"] = Reply(Reply.fixture("v4_progress.json").body, delay_seconds=0.4)
    progress = await make_client("v4", timeout_seconds=2.0).client.fetch_progress("p1")
    assert progress.status == "RUNNING"


async def test_v3_behind_a_proxy_page_is_still_detected(replay: ReplayOms, make_client: MakeClient):
    replay.speaks_v4 = False
    replay.v3_sync["s1"] = Reply.fixture("v3_sync_progress.json")
    # This proxy answers the 4.x path with a 200 HTML page instead of nginx's 404.
    replay.v4_path_answer = Reply(b"<html><body>portal</body></html>", content_type="text/html")
    cut2 = make_client()
    progress = await cut2.client.fetch_progress("s1")
    assert progress.api is Api.V3_SYNC
    assert cut2.client.server_api == "v3"


async def test_one_broken_4x_answer_does_not_make_the_oms_look_like_3_3(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["broken"] = Reply(b'{"success":true,"data":{"status":"RUNN')
    cut = make_client()
    assert await reason_of(cut, "broken") is Reason.DECODE
    assert cut.client.server_api is None  # undecided, not wrongly v3
