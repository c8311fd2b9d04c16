"""Any JSON value yields a valid model or a classified error, never an escaping exception."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from oms_exporter.model import ALARM_LEVELS, ALL_STATUSES, Api, ProjectProgress, Reason
from oms_exporter.oms import v3, v4
from oms_exporter.oms.errors import OmsError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

FIELD_NAMES = [
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
scalar_or_string = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["RUNNING", "100", "1689248064", "100,30", "NaN", "-1", "1e400"])
)
data_objects = st.dictionaries(st.sampled_from(FIELD_NAMES), scalar_or_string, max_size=12)
envelopes = st.fixed_dictionaries(
    {"data": data_objects},
    optional={
        "success": st.sampled_from([True, False, "true", None, 1]),
        "code": st.sampled_from(["success", None, 200, "GHANA-PROJECT000001", "X"]),
        "errorDetail": st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
    },
)


def parsers() -> list[Any]:
    return [
        lambda body: v4.parse_progress("p", body),
        lambda body: v3.parse_progress(Api.V3_MIGRATION, "p", body),
        lambda body: v3.parse_progress(Api.V3_SYNC, "p", body),
    ]


def check_model(progress: ProjectProgress) -> None:
    assert progress.status in ALL_STATUSES
    assert progress.alarm_level in (*ALARM_LEVELS, "UNKNOWN")
    for ratio in (progress.struct_progress_ratio, progress.full_progress_ratio):
        assert ratio is None or 0.0 <= ratio <= 1.0
    for point in progress.checkpoints:
        assert point.seconds is None or (math.isfinite(point.seconds) and point.seconds > 0)
    step = progress.current_step
    assert step is None or (step.replace("_", "").isalnum() and len(step) <= 64)


def parse_all(body: bytes) -> None:
    for parse in parsers():
        try:
            progress = parse(body)
        except OmsError as error:
            reason = error.reason
        else:
            check_model(progress)
            continue
        assert reason in set(Reason)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_a_model_or_a_classified_error(value: object):
    parse_all(json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(envelopes)
def test_any_envelope_shape_is_a_model_or_a_classified_error(envelope: dict[str, Any]):
    parse_all(json.dumps(envelope).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_model_or_a_classified_error(body: bytes):
    parse_all(body)
