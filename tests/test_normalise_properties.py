"""Any answer to any Action the client calls yields a valid model or a classified error.

Never another exception, and every string in a result encodes as UTF-8 (lone surrogates,
valid as JSON escapes, are repaired).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from oms_exporter.model import (
    ALARM_LEVELS,
    ALL_STATUSES,
    MAX_WORST_TABLES,
    STEP_STATUSES,
    VERIFY_RESULTS,
    VERIFY_ROW_KINDS,
    VERIFY_TABLE_STATUSES,
    Api,
    FullVerification,
    ProjectDetails,
    ProjectProgress,
    Reason,
    Step,
)
from oms_exporter.oms import v3, v4
from oms_exporter.oms.envelope import classify_http_status, too_deep
from oms_exporter.oms.errors import OmsError
from tests.oms_replay import assert_encodable

# Text as a hostile OMS may send it: any code point, lone surrogates included.
hostile_text = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfffb", "RUNNING\ud83d", "\ud83d\ude00"]
)
numbers = (
    st.integers(min_value=-(2**63), max_value=2**63)
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 1_700_000_000_000, 2**63 + 1])
    | st.floats()  # NaN and Infinity too: json.dumps writes them, Python's json reads them
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)

PROGRESS_FIELDS = [
    "projectId",
    "status",
    "currentStep",
    "importance",
    "alarmLevel",
    "enableIncrSync",
    "incrSyncCheckpoint",
    "enableStructTransfer",
    "enableFullTransfer",
    "structTransferProgress",
    "fullTransferProgress",
    "enableReverseIncrTransfer",
    "reverseIncrTransferCheckpoint",
    "enableStructMigration",
    "enableFullMigration",
    "structMigrationProgress",
    "fullMigrationProgress",
    "enableReverseIncrSync",
    "reverseIncrSyncCheckpoint",
    "enableStructSync",
    "enableFullSync",
    "structSyncProgress",
    "fullSyncProgress",
    "Status",
    "CurrentStep",
]
PROJECT_FIELDS = [
    "id",
    "projectId",
    "name",
    "type",
    "status",
    "importance",
    "labels",
    "sourceEndpointType",
    "sinkEndpointType",
    "sourceConnectInfo",
    "Id",
    "Name",
]
STEP_FIELDS = ["order", "name", "status", "progress", "stepInfo", "extraInfo", "Name"]
STEP_INFO_FIELDS = ["processedRecords", "capacity", "srcRps", "dstRps", "incrTimestampCheckpoint"]
scalar_or_string = (
    st.none()
    | st.booleans()
    | numbers
    | hostile_text
    | st.sampled_from(
        ["RUNNING", "100", "1689248064", "1700000000000", "100,30", "NaN", "-1", "1e400"]
    )
    | st.sampled_from(["FULL_TRANSFER", "MIGRATION", "SYNC", "FINISHED", "np_1"])
)
field_value = scalar_or_string | json_values


def objects(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


TABLE_FIELDS = [
    "sourceTableName",
    "sourceSchemaName",
    "destSchemaName",
    "sourceOnlyCount",
    "destOnlyCount",
    "mismatchedCount",
    "consistentCount",
    "progress",
    "status",
    "resultType",
    "SourceTableName",
]
label_lists = st.lists(objects(["id", "name", "Name"], field_value), max_size=3)
project_items = objects(PROJECT_FIELDS, field_value | label_lists)
step_items = objects(STEP_FIELDS, field_value | objects(STEP_INFO_FIELDS, field_value))
table_items = objects(
    TABLE_FIELDS, field_value | st.sampled_from(["1.0", "80", "42%", "CONSISTENT", "RUNNING"])
)
verify_datas = objects(
    ["differentNumber", "fullVerifyTableStatistics", "DifferentNumber"],
    field_value | st.lists(table_items | field_value, max_size=8),
)
datas = (
    objects(PROGRESS_FIELDS, field_value)
    | verify_datas
    | project_items
    | st.lists(project_items | step_items | field_value, max_size=70)
    | field_value
)
envelopes = st.fixed_dictionaries(
    {"data": datas},
    optional={
        "success": st.sampled_from([True, False, "true", None, 1]),
        "code": st.sampled_from(["success", None, 200, "GHANA-PROJECT000001", "X\ud800"])
        | json_values,
        "message": json_values,
        "errorDetail": st.none() | st.dictionaries(hostile_text, json_values, max_size=3),
        "totalCount": scalar_or_string,
    },
)


def check_progress(progress: ProjectProgress) -> None:
    assert progress.status in ALL_STATUSES
    assert progress.alarm_level in (*ALARM_LEVELS, "UNKNOWN")
    for ratio in (progress.struct_progress_ratio, progress.full_progress_ratio):
        assert ratio is None or 0.0 <= ratio <= 1.0
    for point in progress.checkpoints:
        assert point.seconds is None or (0 < point.seconds <= 1e11 and math.isfinite(point.seconds))
    step = progress.current_step
    assert step is None or (step.replace("_", "").isalnum() and step.isascii() and len(step) <= 64)


def check_details(details: ProjectDetails) -> None:
    assert 0 < len(details.project_id) <= v4.MAX_ID_CHARS
    assert len(details.name) <= 128
    assert len(details.labels) <= v4.LABELS_MAX_CHARS


def check_steps(steps: tuple[Step, ...]) -> None:
    assert len(steps) <= v4.MAX_STEPS
    assert len({step.name for step in steps}) == len(steps)
    for step in steps:
        assert step.name.isascii()
        assert step.status in STEP_STATUSES
        assert step.progress_ratio is None or 0.0 <= step.progress_ratio <= 1.0
        transfer = step.full_transfer
        for value in () if transfer is None else (transfer.processed_rows, transfer.eta_seconds):
            assert value is None or math.isfinite(value)


def check_verification(result: FullVerification) -> None:
    assert set(result.tables_by_result) == set(VERIFY_RESULTS)
    assert sum(result.tables_by_result.values()) == result.table_count
    assert set(result.rows) == set(VERIFY_ROW_KINDS)
    values = [*result.rows.values(), result.different_rows]
    assert all(value is None or (math.isfinite(value) and value >= 0) for value in values)
    assert len(result.worst_tables) <= min(MAX_WORST_TABLES, result.table_count)
    for table in result.worst_tables:
        assert table.result in VERIFY_RESULTS
        assert table.status in VERIFY_TABLE_STATUSES
        assert table.progress_ratio is None or 0.0 <= table.progress_ratio <= 1.0
        assert math.isfinite(table.different_rows)


def verification_page(body: bytes) -> None:
    different, tables, items = v4.parse_verification_page(body)
    assert items >= len(tables)
    tally = v4.VerificationTally()
    tally.add(different, tables)
    result = tally.result()
    check_verification(result)
    assert_encodable(result)


def progress_v4(body: bytes) -> None:
    check_progress(v4.parse_progress("p", body))


def progress_v3_migration(body: bytes) -> None:
    check_progress(v3.parse_progress(Api.V3_MIGRATION, "p", body))


def progress_v3_sync(body: bytes) -> None:
    check_progress(v3.parse_progress(Api.V3_SYNC, "p", body))


def describe_project(body: bytes) -> None:
    check_details(v4.parse_project("p", body))


def describe_steps(body: bytes) -> None:
    steps, dropped = v4.parse_steps_counted(body)
    check_steps(steps)
    assert dropped >= 0
    assert_encodable(steps)


def list_projects(body: bytes) -> None:
    projects, items = v4.parse_page(body)
    for project in projects:
        check_details(project.details)
        if project.steps is not None:
            check_steps(project.steps)
        assert project.dropped_steps >= 0
    assert items >= len(projects)
    assert_encodable(projects)


# Every Action the client calls, and what its answer must become.
ACTIONS: dict[str, Callable[[bytes], None]] = {
    "DescribeProjectProgress": progress_v4,
    "DescribeProject": describe_project,
    "DescribeProjectSteps": describe_steps,
    "ListProjects": list_projects,
    "ListProjectFullVerifyResult": verification_page,
    "v3 migration progress": progress_v3_migration,
    "v3 sync progress": progress_v3_sync,
}


def failure(parse: Callable[[bytes], object], body: bytes) -> OmsError | None:
    """Run one parser; its OmsError if it raised one (anything else fails the test)."""
    try:
        parse(body)
    except OmsError as error:
        return error
    return None


def parse_all(body: bytes) -> None:
    """Every Action's parser yields a checked model or an OmsError, on the same body."""
    for parse in ACTIONS.values():
        error = failure(parse, body)
        if error is not None:
            assert error.reason in set(Reason)
            str(error).encode("utf-8")
    for status in (302, 401, 500):
        error = classify_http_status(status, body)
        assert isinstance(error, OmsError)
        str(error).encode("utf-8")


def encode(value: object) -> bytes:
    return json.dumps(value).encode()  # surrogates become \ud800 escapes, as OMS would send


def check_results_encode(body: bytes) -> None:
    """Where a progress or details parser succeeds, all its strings encode as UTF-8."""
    for parse in (
        lambda b: v4.parse_progress("p", b),
        lambda b: v4.parse_project("p", b),
        lambda b: v3.parse_progress(Api.V3_SYNC, "p", b),
    ):
        with contextlib.suppress(OmsError):
            assert_encodable(parse(body))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_a_model_or_a_classified_error(value: object):
    parse_all(encode(value))


@settings(max_examples=250, deadline=None)
@given(envelopes)
def test_any_envelope_shape_is_a_model_or_a_classified_error(envelope: dict[str, Any]):
    body = encode(envelope)
    parse_all(body)
    check_results_encode(body)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_model_or_a_classified_error(body: bytes):
    parse_all(body)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(min_value=0, max_value=5000),
    opener=st.sampled_from(['{"a":', "[", '{"data":[']),
    closed=st.booleans(),
    where=st.sampled_from(["data", "stepInfo", "code"]),
)
def test_nesting_at_any_depth_never_escapes(depth: int, opener: str, closed: bool, where: str):
    closer = {'{"a":': "}", "[": "]", '{"data":[': "]}"}[opener]
    nested = opener * depth + "1" + (closer * depth if closed else "")
    answer = {
        "data": {"success": True, "data": "MARK"},
        "stepInfo": {"success": True, "data": [{"name": "FULL_TRANSFER", "stepInfo": "MARK"}]},
        "code": {"success": False, "code": "MARK"},
    }[where]
    body = encode(answer).replace(b'"MARK"', nested.encode())
    parse_all(body)


@settings(max_examples=60, deadline=None)
@given(digits=st.integers(min_value=1, max_value=6000), negative=st.booleans())
def test_integer_literals_of_any_length_are_unknown_or_kept(digits: int, negative: bool):
    literal = ("-" if negative else "") + "9" * digits
    for field in ("fullTransferProgress", "incrSyncCheckpoint", "status"):
        body = f'{{"success":true,"totalCount":{literal},"data":{{"{field}":{literal}}}}}'
        parse_all(body.encode())


def nesting(value: object) -> int:
    """How deep arrays and objects nest in a parsed JSON value."""
    if isinstance(value, dict):
        return 1 + max((nesting(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(item) for item in value), default=0)
    return 0


bracket_text = st.text(st.sampled_from('[]{}"\\ab,:'), max_size=6)
deep_values = st.recursive(
    st.none() | st.integers() | bracket_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(bracket_text, children),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(deep_values, st.integers(min_value=0, max_value=8))
def test_depth_check_agrees_with_the_parsed_depth(value: object, limit: int):
    """Brackets and quotes inside strings never count; escaped quotes never end a string."""
    body = json.dumps(value).encode()
    assert too_deep(body, limit) is (nesting(value) > limit)


@settings(max_examples=150, deadline=None)
@given(verify_datas | st.lists(table_items, max_size=4))
def test_any_successful_verification_page_is_a_checked_tally_or_a_classified_error(data: object):
    """Answers that pass the envelope: arbitrary tables fold into a valid result."""
    error = failure(verification_page, encode({"success": True, "data": data}))
    assert error is None or error.reason in set(Reason)
