"""Answers in the shapes real OMS sends (ODC's fixtures, the documents), at real sizes.

A ListProjects item carries the source and sink connection infos, the whole table
mapping, four transfer configs and the steps; errors carry the useful text in
``errorDetail``; step details of FULL_VERIFIER look like FULL_TRANSFER's. The fixtures in
tests/fixtures/ are hand-written from those shapes; a replaying server plays them.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from oms_exporter.model import Reason
from oms_exporter.oms import discovery, v4
from oms_exporter.oms.client import ClientObserver
from oms_exporter.oms.discovery import DiscoveryFilter
from oms_exporter.oms.errors import (
    OmsActionUnavailable,
    OmsApiError,
    OmsError,
    OmsProjectNotFound,
)
from oms_exporter.poller import Poller
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.sharding import Shard
from oms_exporter.store import Store
from tests.conftest import ClientUnderTest, target_config
from tests.oms_replay import ReplayOms, Reply, fixture_json, progress_with

MakeClient = Callable[..., ClientUnderTest]
KIB = 1024


def list_item(project_id: str, *, tables: int = 2, **changes: object) -> dict[str, Any]:
    """The documented ListProjects item, mapping ``tables`` tables (about 110 bytes each)."""
    item = copy.deepcopy(fixture_json("v4_list_item.json"))
    database = item["transferMapping"]["databases"][0]
    shape = database["tables"][0]
    database["tables"] = [
        {**shape, "name": f"order_{i:05d}", "mappedName": f"order_{i:05d}"} for i in range(tables)
    ]
    item.update({"id": project_id, "name": f"project {project_id}", **changes})
    return item


def list_page(items: list[dict[str, Any]], **changes: object) -> dict[str, Any]:
    answer = fixture_json("v4_list_projects_page.json")
    answer.update({"data": items, **changes})
    return answer


def assert_asked_ahead(numbers: list[int], *, read: int) -> None:
    """Pages 1..read were asked in order, then at most PAGES_AHEAD more past them: those
    asked with the last page read, which ended the listing (whether they reach OMS before
    they are cancelled depends on timing)."""
    assert numbers == list(range(1, len(numbers) + 1))
    assert read <= len(numbers) <= read + discovery.PAGES_AHEAD


def requests_of(replay: ReplayOms, action: str) -> list[dict[str, Any]]:
    return [seen.body or {} for seen in replay.seen if seen.action == action]


# --- ListProjects: the documented item and page ---------------------------------------------


async def test_odc_shaped_page_is_read_whatever_total_count_says(
    replay: ReplayOms, make_client: MakeClient
):
    replay.list_answer = Reply.fixture("v4_list_projects_page.json")  # totalCount 1, 2 items
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert replay.count(action="ListProjects") == 1  # 2 < 150: a short page ends it
    events, crm = (project.details for project in projects)
    assert (events.project_id, events.type, events.status) == ("np_5k0001", "SYNC", "RUNNING")
    assert events.labels == ""  # "labels": null is no labels
    assert (events.alarming, events.full_verify, events.incr_verify) == (True, False, True)
    assert (crm.project_id, crm.labels, crm.status) == ("np_5k0002", "crm", "FAILED")
    assert (crm.alarming, crm.full_verify, crm.incr_verify) == (False, True, False)
    assert (crm.source_type, crm.sink_type) == ("ORACLE", "OB_ORACLE")


async def test_listed_steps_are_read_like_describe_project_steps(
    replay: ReplayOms, make_client: MakeClient
):
    """ListProjects items carry steps[] with stepInfo: the poller can skip the step call."""
    replay.list_answer = Reply.fixture("v4_list_projects_page.json")
    events, crm = await make_client().client.list_projects(DiscoveryFilter())
    assert events.steps is not None
    assert crm.steps is not None
    assert [(s.name, s.status, s.progress_ratio) for s in events.steps] == [
        ("TRANSFER_PRECHECK", "FINISHED", 1.0),
        ("INCR_TRANSFER", "MONITORING", 1.0),
    ]
    assert [(s.name, s.status, s.progress_ratio) for s in crm.steps] == [
        ("TRANSFER_PRECHECK", "FINISHED", 1.0),
        ("FULL_TRANSFER", "FAILED", 0.61),
    ]
    assert replay.count(action="DescribeProjectSteps") == 0


async def test_paging_goes_on_when_total_count_counts_pages(
    replay: ReplayOms, make_client: MakeClient
):
    """The English documents: totalCount 3 (pages) for 340 projects; read them all."""
    replay.listed = [list_item(f"np_{i:04d}") for i in range(340)]
    replay.total_is_pages = True
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 340
    numbers = [body["pageNumber"] for body in requests_of(replay, "ListProjects")]
    assert_asked_ahead(numbers, read=3)


async def test_paging_ends_on_an_empty_page_after_full_ones(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = [list_item(f"np_{i:04d}") for i in range(300)]
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 300
    # 150, 150, then an empty page, and perhaps pages asked ahead of it
    assert 3 <= replay.count(action="ListProjects") <= 3 + discovery.PAGES_AHEAD


async def test_a_server_ignoring_page_number_is_read_once(
    replay: ReplayOms, make_client: MakeClient
):
    items = [list_item(f"np_{i:04d}") for i in range(150)]
    replay.list_answer = Reply.json(list_page(items, totalCount=10**6))
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 150
    # The second page brought nothing new (more may have been asked ahead of it).
    assert 2 <= replay.count(action="ListProjects") <= 2 + discovery.PAGES_AHEAD


async def test_listing_asks_for_a_stable_order(replay: ReplayOms, make_client: MakeClient):
    replay.listed = [list_item(f"np_{i:04d}") for i in range(200)]
    await make_client().client.list_projects(DiscoveryFilter(types=("MIGRATION",)))
    asked = requests_of(replay, "ListProjects")
    assert asked[:2] == [
        {"type": "MIGRATION", "sortField": "gmtCreate", "order": "asc", "pageNumber": page,
         "pageSize": 150}
        for page in (1, 2)
    ]  # fmt: skip
    assert_asked_ahead([body["pageNumber"] for body in asked], read=2)


async def test_the_next_page_is_asked_for_while_one_is_read(
    replay: ReplayOms, make_client: MakeClient
):
    """OMS builds page 3 while page 2 travels and is parsed: page 2 waits for page 3's ask."""
    replay.listed = [list_item(f"np_{i:04d}") for i in range(400)]
    replay.page_waits_for_next = 2
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 400
    assert not replay.pages_held_too_long
    numbers = [body["pageNumber"] for body in requests_of(replay, "ListProjects")]
    assert_asked_ahead(numbers, read=3)


async def test_two_pages_are_asked_for_while_one_is_read(
    replay: ReplayOms, make_client: MakeClient
):
    """Against an OMS that takes 60 ms a page, one page ahead left the listing at about
    30 ms a page: page 2 is answered only once page 4 was asked."""
    replay.listed = [list_item(f"np_{i:04d}") for i in range(500)]
    replay.page_waits_for_next = 2
    replay.pages_ahead_awaited = discovery.PAGES_AHEAD
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 500
    assert not replay.pages_held_too_long
    numbers = [body["pageNumber"] for body in requests_of(replay, "ListProjects")]
    assert_asked_ahead(numbers, read=4)


async def test_an_oms_refusing_the_sort_fields_is_listed_in_its_own_order(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = [list_item(f"np_{i:04d}") for i in range(3)]
    replay.refuse_sort = True
    cut = make_client()
    assert len(await cut.client.list_projects(DiscoveryFilter())) == 3
    assert len(await cut.client.list_projects(DiscoveryFilter())) == 3
    sent = ["sortField" in body for body in requests_of(replay, "ListProjects")]
    assert sent == [True, False, False]  # refused once, then remembered


async def test_a_refusal_without_the_sort_fields_too_is_the_error(
    replay: ReplayOms, make_client: MakeClient
):
    replay.list_answer = Reply.fixture("v4_cm_unavailable.json")
    with pytest.raises(OmsApiError, match="GHANA-OPERAT000001"):
        await make_client().client.list_projects(DiscoveryFilter())
    assert replay.count(action="ListProjects") == 1  # not a sort problem: asked once


# --- real sizes ----------------------------------------------------------------------------


async def test_projects_of_500_tables_are_discovered_with_default_settings(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = [list_item(f"np_{i:04d}", tables=500) for i in range(200)]
    page_bytes = len(json.dumps(list_page(replay.listed[:150])))
    assert page_bytes > v4.PROJECT_ANSWER_BYTES  # far beyond the 1 MiB answer cap too
    cut = make_client(max_response_bytes=1024 * KIB)  # the default
    projects = await cut.client.list_projects(DiscoveryFilter())
    assert len(projects) == 200
    sizes = [body["pageSize"] for body in requests_of(replay, "ListProjects")]
    # 150 refused, then 75 + 75 + 50, and perhaps pages asked ahead of the last
    assert sizes[0] == 150
    assert sizes[1:] == [75] * len(sizes[1:])
    assert 3 <= len(sizes[1:]) <= 3 + discovery.PAGES_AHEAD
    replay.seen.clear()
    assert len(await cut.client.list_projects(DiscoveryFilter())) == 200
    pages = {body["pageNumber"] for body in requests_of(replay, "ListProjects")}
    assert {1, 2, 3} <= pages  # the size that fitted is remembered: 75 + 75 + 50


async def test_a_page_too_large_is_asked_again_smaller_and_remembered(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(v4, "PROJECT_ANSWER_BYTES", 256 * KIB)
    replay.listed = [list_item(f"np_{i:04d}", tables=250) for i in range(40)]  # ~30 kB each
    cut = make_client(max_response_bytes=64 * KIB)
    assert len(await cut.client.list_projects(DiscoveryFilter())) == 40
    sizes = [body["pageSize"] for body in requests_of(replay, "ListProjects")]
    # 8 full pages of 5, then an empty one, and perhaps more asked ahead of it
    assert sizes[:3] == [150, 75, 25]
    assert sizes[3:] == [5] * len(sizes[3:])
    assert 9 <= len(sizes[3:]) <= 9 + discovery.PAGES_AHEAD
    numbers = [b["pageNumber"] for b in requests_of(replay, "ListProjects")][3:]
    assert numbers == list(range(1, len(numbers) + 1))
    replay.seen.clear()
    assert len(await cut.client.list_projects(DiscoveryFilter())) == 40
    assert {body["pageSize"] for body in requests_of(replay, "ListProjects")} == {5}


async def test_smaller_projects_let_the_page_grow_again(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(v4, "PROJECT_ANSWER_BYTES", 256 * KIB)
    replay.listed = [list_item(f"np_{i:04d}", tables=250) for i in range(40)]
    cut = make_client(max_response_bytes=64 * KIB)
    await cut.client.list_projects(DiscoveryFilter())
    replay.listed = [list_item(f"np_{i:04d}") for i in range(40)]  # mappings shrank
    item_bytes = len(json.dumps(replay.listed[0]))
    assert 25 * item_bytes < 128 * KIB < 75 * item_bytes  # 25 fit in half the cap, 75 not
    first_sizes = []
    for _ in range(3):
        replay.seen.clear()
        assert len(await cut.client.list_projects(DiscoveryFilter())) == 40
        # Page 1's: a page asked ahead in the listing before may reach OMS after it ended.
        first = [body for body in requests_of(replay, "ListProjects") if body["pageNumber"] == 1]
        first_sizes.append(first[0]["pageSize"])
    assert first_sizes == [5, 25, 25]


async def test_a_project_too_large_alone_is_skipped_and_logged(
    replay: ReplayOms,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.setattr(v4, "PROJECT_ANSWER_BYTES", 256 * KIB)
    replay.listed = [list_item(f"np_{i:04d}") for i in range(12)]
    replay.listed[7] = list_item("np_huge", tables=4000)  # about 450 kB on its own
    cut = make_client(max_response_bytes=64 * KIB)
    with caplog.at_level(logging.WARNING, logger="oms_exporter.oms.discovery"):
        projects = await cut.client.list_projects(DiscoveryFilter())
    assert [p.details.project_id for p in projects] == [f"np_{i:04d}" for i in range(12) if i != 7]
    assert "1 project(s) listed by ListProjects are each larger than 262144 bytes" in caplog.text


async def test_many_projects_too_large_fail_the_discovery(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(v4, "PROJECT_ANSWER_BYTES", 64 * KIB)
    replay.listed = [list_item(f"np_{i:04d}", tables=1000) for i in range(30)]
    cut = make_client(max_response_bytes=64 * KIB)
    with pytest.raises(OmsError) as caught:
        await cut.client.list_projects(DiscoveryFilter())
    assert caught.value.reason is Reason.DECODE
    assert replay.count(action="ListProjects") == 4 + discovery.MAX_SKIPPED


async def test_describe_project_of_20000_tables_is_read_with_default_settings(
    replay: ReplayOms, make_client: MakeClient
):
    answer = fixture_json("v4_describe_project.json")
    answer["data"] = list_item("np_big", tables=20_000, type="SYNC", name="big")
    assert len(json.dumps(answer)) > 2 * 1024 * KIB
    replay.describe["np_big"] = Reply.json(answer)
    replay.v4["np_big"] = Reply.fixture("v4_progress.json")
    progress = await make_client().client.fetch_progress("np_big")
    assert (progress.name, progress.kind.value) == ("big", "sync")


async def test_describe_project_gives_verification_flags_but_no_alarm_state(
    replay: ReplayOms, make_client: MakeClient
):
    replay.describe["np_6m0001"] = Reply.fixture("v4_describe_project.json")
    replay.v4["np_6m0001"] = Reply.fixture("v4_progress.json")
    progress = await make_client().client.fetch_progress("np_6m0001")
    assert progress.details is not None
    assert progress.details.name == "payments mysql to ob"
    assert progress.details.labels == "payments,prod"
    assert progress.details.alarming is None  # asked once: it would go stale
    assert (progress.features["full_verify"], progress.features["incr_verify"]) == (True, True)


async def test_discovered_verification_flags_become_features(
    replay: ReplayOms, make_client: MakeClient
):
    replay.list_answer = Reply.fixture("v4_list_projects_page.json")
    replay.v4["np_5k0001"] = Reply.fixture("v4_progress.json")
    cut = make_client()
    await cut.client.list_projects(DiscoveryFilter())
    progress = await cut.client.fetch_progress("np_5k0001")
    assert (progress.features["full_verify"], progress.features["incr_verify"]) == (False, True)
    assert replay.count(action="DescribeProject") == 0


# --- DescribeProjectSteps --------------------------------------------------------------------


async def steps_of(cut: ClientUnderTest, replay: ReplayOms, reply: Reply) -> dict[str, Any]:
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.steps["p1"] = reply
    await cut.client.fetch_progress("p1")
    return {step.name: step for step in await cut.client.fetch_steps("p1") or ()}


async def test_full_verifier_step_info_is_read_like_the_full_transfer(
    replay: ReplayOms, make_client: MakeClient
):
    steps = await steps_of(make_client("v4"), replay, Reply.fixture("v4_steps_verifier.json"))
    verifier = steps["FULL_VERIFIER"].full_transfer
    assert verifier is not None
    assert (verifier.processed_rows, verifier.estimated_rows) == (21_000_000, 50_000_000)
    assert (verifier.source_rows_per_second, verifier.sink_rows_per_second) == (9000, 8800)
    assert verifier.eta_seconds == pytest.approx(29_000_000 / 8800)
    full = steps["FULL_TRANSFER"].full_transfer
    assert full is not None
    assert full.processed_rows == 52_000_000  # capacity is an estimate: the ratio passes 1
    assert full.eta_seconds is None  # finished, rate 0


async def test_iops_are_bytes_and_rt_is_milliseconds_per_row(
    replay: ReplayOms, make_client: MakeClient
):
    steps = await steps_of(make_client("v4"), replay, Reply.fixture("v4_steps_verifier.json"))
    verifier = steps["FULL_VERIFIER"].full_transfer
    assert verifier is not None
    assert (verifier.source_bytes_per_second, verifier.sink_bytes_per_second) == (
        1_800_000,
        1_750_000,
    )
    assert verifier.source_row_latency_seconds == pytest.approx(0.002)
    assert verifier.sink_row_latency_seconds == pytest.approx(0.005)
    full = steps["FULL_TRANSFER"].full_transfer
    assert full is not None
    assert (full.source_bytes_per_second, full.sink_row_latency_seconds) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"srcRt": "7", "dstRt": -1, "srcIops": None}, (0.007, None, None, None)),
        ({"srcRt": 10**400, "dstRt": "n/a", "srcIops": -5, "dstIops": "2048"}, (None,) * 3 + (2048.0,)),
        ({}, (None, None, None, None)),
    ],
)  # fmt: skip
async def test_odd_units_are_unknown(
    replay: ReplayOms,
    make_client: MakeClient,
    info: dict[str, object],
    expected: tuple[float | None, ...],
):
    answer = fixture_json("v4_steps_verifier.json")
    answer["data"][5]["stepInfo"] = {"processedRecords": 1, **info}
    steps = await steps_of(make_client("v4"), replay, Reply.json(answer))
    verifier = steps["FULL_VERIFIER"].full_transfer
    assert verifier is not None
    found = (
        verifier.source_row_latency_seconds,
        verifier.sink_row_latency_seconds,
        verifier.source_bytes_per_second,
        verifier.sink_bytes_per_second,
    )
    assert found == pytest.approx(expected)


async def test_checkpoint_sample_time_comes_from_the_incr_transfer_step(
    replay: ReplayOms, make_client: MakeClient
):
    cut = make_client("v4")
    steps = await steps_of(cut, replay, Reply.fixture("v4_steps_verifier.json"))
    sample = steps["INCR_TRANSFER"].checkpoint_sample
    assert sample is not None
    assert (sample.direction, sample.seconds) == ("forward", 1_728_116_158.0)
    assert steps["TRANSFER_APP_SWITCH"].checkpoint_sample is None  # of no known direction
    progress = await cut.client.fetch_progress("p1")
    with_steps = replace(progress, steps=tuple(steps.values()))
    assert [(s.direction, s.seconds) for s in with_steps.checkpoint_samples] == [
        ("forward", 1_728_116_158.0)
    ]


async def test_checkpoint_sample_in_milliseconds_is_converted_and_counted(
    replay: ReplayOms, make_client: MakeClient
):
    answer = fixture_json("v4_steps_verifier.json")
    answer["data"][4]["stepInfo"]["checkpointSampleTimestamp"] = 1_728_116_158_250
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    replay.steps["p1"] = Reply.json(answer)
    converted: list[None] = []
    cut = make_client("v4")
    cut.client._observer = ClientObserver(checkpoint_converted=lambda: converted.append(None))
    await cut.client.fetch_progress("p1")
    converted.clear()
    steps = {s.name: s for s in await cut.client.fetch_steps("p1") or ()}
    sample = steps["INCR_TRANSFER"].checkpoint_sample
    assert sample is not None
    assert sample.seconds == pytest.approx(1_728_116_158.25)
    assert len(converted) == 1


@pytest.mark.parametrize("value", [0, None, "soon"])
async def test_checkpoint_sample_without_a_time_is_unknown(
    replay: ReplayOms, make_client: MakeClient, value: object
):
    answer = fixture_json("v4_steps_verifier.json")
    answer["data"][4]["stepInfo"]["checkpointSampleTimestamp"] = value
    steps = await steps_of(make_client("v4"), replay, Reply.json(answer))
    sample = steps["INCR_TRANSFER"].checkpoint_sample
    assert sample is not None
    assert sample.seconds is None


# --- errors ----------------------------------------------------------------------------------


async def error_of(cut: ClientUnderTest, project_id: str = "p1") -> OmsError:
    with pytest.raises(OmsError) as caught:
        await cut.client.fetch_progress(project_id)
    return caught.value


async def test_error_detail_message_is_preferred_to_the_generic_one(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["p1"] = Reply.fixture("v4_error_transfer_instance_creating.json")
    error = await error_of(make_client("v4"))
    assert type(error) is OmsApiError
    assert error.code == "GHANA-OPERIE000000"
    assert str(error) == (
        "OMS error GHANA-OPERIE000000: The transfer instance is being created, which usually"
        " takes 5 to 10 minutes. Try again later."
    )


async def test_ocp_error_code_is_read(replay: ReplayOms, make_client: MakeClient):
    replay.v4["p1"] = Reply.fixture("v4_error_ocp.json")
    error = await error_of(make_client("v4"))
    assert (error.reason, error.code) == (Reason.API_ERROR, "GHANA-OPERAT000001")
    assert str(error) == "OMS error GHANA-OPERAT000001: The CM service is unavailable."


async def test_an_oms_without_the_steps_action_is_told_from_a_missing_project(
    replay: ReplayOms, make_client: MakeClient
):
    replay.without_actions = {"DescribeProjectSteps"}
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    cut = make_client("v4")
    await cut.client.fetch_progress("p1")
    with pytest.raises(OmsActionUnavailable) as unavailable:
        await cut.client.fetch_steps("p1")
    assert isinstance(unavailable.value, OmsApiError)
    assert (unavailable.value.reason, unavailable.value.code) == (Reason.API_ERROR, "PARAM_ERROR")
    replay.without_actions = set()
    with pytest.raises(OmsProjectNotFound) as missing:  # no steps for "gone": deleted
        await cut.client.fetch_steps("gone")
    assert (missing.value.reason, missing.value.code) == (Reason.NOT_FOUND, "GHANA-PROJECT000001")


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        ({"code": "PARAM_ERROR", "message": "Parameter id is required"}, OmsApiError, "PARAM_ERROR"),
        ({"code": "PARAM_ERROR", "message": "Action DescribeX is not supported"}, OmsActionUnavailable, "PARAM_ERROR"),
        ({"code": "InvalidAction.NotFound", "message": "Specified api is not found"}, OmsActionUnavailable, "INVALIDACTION.NOTFOUND"),
        ({"code": "ACTION_NOT_EXIST"}, OmsActionUnavailable, "ACTION_NOT_EXIST"),
        ({"code": "TRANSACTION_NOT_FOUND"}, OmsProjectNotFound, "TRANSACTION_NOT_FOUND"),
        ({"code": "GHANA-PROJECT000001", "message": "action failed: not found"}, OmsProjectNotFound, "GHANA-PROJECT000001"),
        ({"code": None, "errorDetail": {"code": "PROJECT_NOT_FOUND_ERROR"}}, OmsProjectNotFound, "PROJECT_NOT_FOUND_ERROR"),
    ],
)  # fmt: skip
async def test_error_classes_say_what_was_refused(
    replay: ReplayOms,
    make_client: MakeClient,
    answer: dict[str, object],
    kind: type[OmsError],
    code: str,
):
    replay.v4["p1"] = Reply.json({"success": False, **answer})
    error = await error_of(make_client("v4"))
    assert (type(error), error.code) == (kind, code)


# --- other systems' secrets ---------------------------------------------------------------

SECRET_KEYS = frozenset(
    {"host", "port", "username", "drcUser", "logProxyIp", "logProxyPort", "configUrl"}
)
CONNECTED_FIXTURES = (
    "v4_list_item.json",
    "v4_list_projects_page.json",
    "v4_describe_project.json",
    "v4_error_connectivity.json",
)


def secret_values(value: object) -> Iterator[str]:
    """Hosts, ports and user names of the connection infos in a fixture."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str | int) and not isinstance(item, bool):
                yield str(item)
            yield from secret_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from secret_values(item)


SECRETS = sorted({s for name in CONNECTED_FIXTURES for s in secret_values(fixture_json(name))})


def test_the_fixtures_carry_secrets_of_every_kind():
    assert {"10.186.17.25", "33061", "orders_reader_q7", "ob-prod-sink.corp.example"} <= set(
        SECRETS
    )
    assert len(SECRETS) >= 25


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def connected(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer whose data also carries the connection infos of the documented item."""
    item = fixture_json("v4_list_item.json")
    extra = {key: item[key] for key in ("sourceConnectInfo", "sinkConnectInfo")}
    answer["data"] = {**answer["data"], **extra} if isinstance(answer["data"], dict) else extra
    return answer


async def test_connection_infos_reach_no_model_error_or_log(
    replay: ReplayOms, make_client: MakeClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    page = fixture_json("v4_list_projects_page.json")
    replay.listed = [fixture_json("v4_list_item.json"), *page["data"]]
    replay.describe["np_6m0001"] = Reply.fixture("v4_describe_project.json")
    for project_id in ("np_4w0001", "np_5k0001", "np_5k0002", "np_6m0001"):
        replay.v4[project_id] = Reply.json(connected(fixture_json("v4_progress.json")))
        steps = fixture_json("v4_steps_verifier.json")
        steps["data"][3]["extraInfo"]["errorMsg"] = "lost 10.186.17.25:33061 (orders_reader_q7)"
        replay.steps[project_id] = Reply.json(steps)
    failing = Reply.fixture("v4_error_connectivity.json")
    replay.v4["np_failing"] = failing
    replay.describe["np_failing_describe"] = failing
    replay.v4["np_failing_describe"] = Reply.fixture("v4_progress.json")
    replay.steps["np_failing_describe"] = failing
    cut = make_client("v4")
    models: list[object] = []
    errors: list[OmsError] = []

    models.append(await cut.client.list_projects(DiscoveryFilter()))
    for project_id in ("np_4w0001", "np_5k0001", "np_5k0002", "np_6m0001", "np_failing_describe"):
        models.append(await cut.client.fetch_progress(project_id))
        try:
            models.append(await cut.client.fetch_steps(project_id))
        except OmsError as error:
            errors.append(error)
    with pytest.raises(OmsError) as caught:
        await cut.client.fetch_progress("np_failing")
    errors.append(caught.value)
    replay.list_answer = failing
    with pytest.raises(OmsError) as listing:
        await cut.client.list_projects(DiscoveryFilter())
    errors.append(listing.value)

    # The poller logs state changes with the error text: one round through it, too.
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10)
    config = target_config(
        "oms", ["np_6m0001", "np_failing", "np_failing_describe"], step_details=True
    )
    poller.configure(
        [(config, make_client("v4").client)],
        interval_seconds=10,
        request_timeout_seconds=2,
        max_concurrency=2,
        shard=Shard(),
    )
    await poller.poll_round()
    models.extend(state.progress for state in poller.store)
    models.extend(state.last_error_message for state in poller.store)

    assert len(errors) == 3
    assert all(error.code == "PARAM_ERROR" for error in errors)
    assert "Connectivity test failed: cannot connect to [redacted]:[redacted] as [redacted]" in (
        str(errors[0])
    )
    for model in models:
        assert leaked(repr(model)) == [], model
    for error in errors:
        assert leaked(str(error)) == []
        assert leaked(repr(error)) == []
    assert "np_failing" in caplog.text  # the poller did log the failures
    assert leaked(caplog.text) == []


async def test_progress_error_text_is_redacted_before_it_is_shortened(
    replay: ReplayOms, make_client: MakeClient
):
    host = "a-very-long-source-host-name.region-1.corp.example"
    answer = {
        "success": False,
        "code": "PARAM_ERROR",
        "message": "x" * 100 + f" {host}:3306",
        "data": {"sourceConnectInfo": {"host": host, "port": 3306}},
    }
    replay.v4["p1"] = Reply.json(answer)
    text = str(await error_of(make_client("v4")))
    assert "a-very-long" not in text
    assert "3306" not in text
    assert text.endswith(" [redacted]:[redacte")  # cut at 120 characters, after redaction


async def test_steps_of_a_listing_never_reach_the_model(replay: ReplayOms, make_client: MakeClient):
    replay.listed = [
        list_item("np_1", steps=[{"name": "FULL_TRANSFER", "status": "FAILED"}]),
        list_item("np_2", labels=None),
    ]
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert [(p.details.project_id, p.details.labels) for p in projects] == [
        ("np_1", "billing,prod"),
        ("np_2", ""),
    ]


async def test_progress_with_connection_infos_is_read_as_documented(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["p1"] = progress_with(
        "v4_progress.json",
        sourceConnectInfo={"host": "10.186.17.25", "username": "orders_reader_q7"},
    )
    progress = await make_client("v4").client.fetch_progress("p1")
    assert progress.status == "RUNNING"
    assert leaked(repr(progress)) == []
