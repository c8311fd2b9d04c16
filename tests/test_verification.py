"""Full verification results (ListProjectFullVerifyResult): parsing, paging, the tally."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from oms_exporter.model import MAX_WORST_TABLES, VERIFY_RESULTS
from oms_exporter.oms import v4
from oms_exporter.oms.errors import OmsActionUnavailable, OmsInvalidAnswer, OmsProjectNotFound
from tests.conftest import ClientUnderTest
from tests.oms_replay import ReplayOms, Reply, fixture_bytes, verify_entry

MakeClient = Callable[..., ClientUnderTest]


def page_body(different: object, tables: list[object]) -> bytes:
    data = {"differentNumber": different, "fullVerifyTableStatistics": tables}
    return json.dumps({"success": True, "code": None, "data": data}).encode()


def test_documented_page_is_summed_by_kind_and_counted_by_result():
    different, tables, items = v4.parse_verification_page(fixture_bytes("v4_verify_result.json"))
    assert (different, items, len(tables)) == (17.0, 5, 5)
    tally = v4.VerificationTally()
    assert tally.add(different, tables) == 5
    result = tally.result()
    assert result.different_rows == 17.0
    assert result.table_count == 5
    assert result.rows == {
        "consistent": 1_200_000 + 4_799_983 + 640_000,
        "mismatched": 12,
        "source_only": 3,
        "dest_only": 2,
    }
    assert set(result.tables_by_result) == set(VERIFY_RESULTS)  # every result, 0 when none
    counted = {name: count for name, count in result.tables_by_result.items() if count}
    assert counted == {
        "CONSISTENT": 1,
        "INCONSISTENT": 1,
        "RUNNING": 1,
        "BOTH_EMPTY": 1,
        "RUNTIME_EXCEPTION": 1,
    }
    assert result.inconsistent_tables == 2
    # Blocking first, the most different rows first among them; consistent ones not shown.
    shown = [(t.source_table, t.result, t.different_rows) for t in result.worst_tables]
    assert shown == [
        ("order_items", "INCONSISTENT", 17.0),
        ("coupons", "RUNTIME_EXCEPTION", 0.0),
        ("audit_log", "RUNNING", 0.0),
    ]
    by_name = {t.source_table: t for t in tables}
    assert by_name["audit_log"].dest_schema == "shop_archive"
    assert by_name["audit_log"].status == "RUNNING"
    assert by_name["coupons"].status == "ERROR"
    assert by_name["coupons"].mismatched_rows is None


@pytest.mark.parametrize(
    ("progress", "ratio"),
    [
        ("1.0", 1.0),  # ODC's fixture of a finished table: a fraction
        ("0.25", 0.25),
        ("80", 0.8),  # Alibaba Cloud's documents: percent
        ("100", 1.0),
        ("42%", 0.42),
        ("1", 0.01),
        (55, 0.55),
        (0.5, 0.5),
        ("5151", 1.0),  # clamped, as the other progress values
        ("-3", None),
        ("NaN", None),
        (None, None),
        ([], None),
    ],
)
def test_table_progress_is_a_string_in_percent_or_a_fraction(progress: object, ratio: float | None):
    table = v4.verified_table(verify_entry("t", progress=progress))
    assert table.progress_ratio == ratio


def test_no_result_yet_is_an_empty_page():
    assert v4.parse_verification_page(fixture_bytes("v4_verify_result_none.json")) == (None, [], 0)
    body = json.dumps({"success": True, "data": None}).encode()
    assert v4.parse_verification_page(body) == (None, [], 0)


@pytest.mark.parametrize(
    "data",
    [[], "RUNNING", 17, {"differentNumber": 1, "fullVerifyTableStatistics": {"a": 1}}],
)
def test_a_data_of_another_shape_is_an_invalid_answer(data: object):
    with pytest.raises(OmsInvalidAnswer):
        v4.parse_verification_page(json.dumps({"success": True, "data": data}).encode())


def test_pascal_case_and_hostile_strings_are_repaired():
    entry = {
        "SourceTableName": "t\ud800" + "x" * 500,
        "SourceSchemaName": "s\n\tchema",
        "DestSchemaName": None,
        "MismatchedCount": 10**400,
        "ConsistentCount": "12",
        "Status": "finished",
        "ResultType": "inconsistent\ud800",
    }
    body = json.dumps(
        {"Success": True, "Data": {"DifferentNumber": "3", "FullVerifyTableStatistics": [entry, 7]}}
    )
    different, (table,), items = v4.parse_verification_page(body.encode())
    assert (different, items) == (3.0, 2)
    table.source_table.encode("utf-8")
    assert len(table.source_table) <= 128
    assert table.source_schema == "s chema"
    assert table.dest_schema == ""
    assert (table.status, table.result) == ("FINISHED", "UNKNOWN")  # not a closed-set value
    assert (table.mismatched_rows, table.consistent_rows) == (None, 12.0)


def test_the_worst_tables_are_capped_and_each_table_counted_once():
    tally = v4.VerificationTally()
    first = [
        v4.verified_table(verify_entry(f"t{i:03d}", "INCONSISTENT", mismatched=i))
        for i in range(100)
    ]
    assert tally.add(5, first) == 100
    assert tally.add(None, first[:10]) == 0  # a page seen again adds nothing
    result = tally.result()
    assert result.different_rows == 5  # the first page's differentNumber: OMS's total
    assert result.table_count == 100
    assert result.tables_by_result["INCONSISTENT"] == 100
    assert len(result.worst_tables) == MAX_WORST_TABLES
    assert [t.source_table for t in result.worst_tables[:3]] == ["t099", "t098", "t097"]


async def test_every_page_is_asked_with_only_the_project_and_paging(
    replay: ReplayOms, make_client: MakeClient
):
    tables = [verify_entry(f"t{i:04d}") for i in range(320)]
    tables[200] = verify_entry("t0200", "INCONSISTENT", mismatched=4)
    replay.v4["np_1"] = Reply.fixture("v4_progress.json")
    replay.verified["np_1"] = (4, tables)
    cut = make_client()
    await cut.client.fetch_progress("np_1")
    result = await cut.client.fetch_verification("np_1")
    assert result is not None
    assert (result.table_count, result.different_rows) == (320, 4)
    assert result.tables_by_result["CONSISTENT"] == 319
    assert [t.source_table for t in result.worst_tables] == ["t0200"]
    asked = [seen.body for seen in replay.seen if seen.action == v4.VERIFY_ACTION]
    # OMS requires only projectId: no schema or status filter, the largest page.
    assert asked == [{"projectId": "np_1", "pageNumber": n, "pageSize": 150} for n in (1, 2, 3)]


async def test_a_server_ignoring_page_numbers_is_asked_twice_not_forever(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["np_1"] = Reply.fixture("v4_progress.json")
    replay.verify["np_1"] = Reply(page_body(0, [verify_entry(f"t{i}") for i in range(150)]))
    cut = make_client()
    await cut.client.fetch_progress("np_1")
    result = await cut.client.fetch_verification("np_1")
    assert result is not None
    assert result.table_count == 150
    assert replay.count(action=v4.VERIFY_ACTION) == 2


async def test_pages_are_bounded(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(v4, "MAX_VERIFY_PAGES", 3)
    replay.v4["np_1"] = Reply.fixture("v4_progress.json")
    replay.verified["np_1"] = (0, [verify_entry(f"t{i:05d}") for i in range(2000)])
    cut = make_client()
    await cut.client.fetch_progress("np_1")
    result = await cut.client.fetch_verification("np_1")
    assert result is not None
    assert result.table_count == 450
    assert replay.count(action=v4.VERIFY_ACTION) == 3


async def test_an_oms_without_the_action_and_a_missing_project_are_told_apart(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["np_1"] = Reply.fixture("v4_progress.json")
    cut = make_client()
    await cut.client.fetch_progress("np_1")
    with pytest.raises(OmsProjectNotFound):
        await cut.client.fetch_verification("np_1")  # nothing scripted: not found
    replay.without_actions.add(v4.VERIFY_ACTION)
    with pytest.raises(OmsActionUnavailable):
        await cut.client.fetch_verification("np_1")


async def test_a_3_3_oms_has_no_verification(replay: ReplayOms, make_client: MakeClient):
    replay.speaks_v4 = False
    replay.v3_migration["m1"] = Reply.fixture("v3_migration_progress.json")
    cut = make_client()
    await cut.client.fetch_progress("m1")
    before = len(replay.seen)
    assert await cut.client.fetch_verification("m1") is None
    assert len(replay.seen) == before
