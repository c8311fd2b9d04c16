"""Cut-over readiness: each blocker, from snapshots shaped like real 4.x and 3.3 answers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms_exporter.model import (
    VERIFY_RESULTS,
    Api,
    Checkpoint,
    FullVerification,
    Kind,
    ProjectDetails,
    ProjectProgress,
    Step,
)
from oms_exporter.readiness import (
    BLOCKERS,
    applies,
    assess,
    clock_blocked_span,
)

NOW = 1_800_000_000.0
INTERVAL = 30.0


def verification(different: float = 0, inconsistent: int = 0) -> FullVerification:
    tables = dict.fromkeys(VERIFY_RESULTS, 0)
    tables["CONSISTENT"] = 48 - inconsistent
    tables["INCONSISTENT"] = inconsistent
    return FullVerification(
        different_rows=different,
        rows={"consistent": 1e6, "mismatched": different, "source_only": 0, "dest_only": 0},
        tables_by_result=tables,
        table_count=48,
    )


def steps(**statuses: tuple[str, float | None]) -> tuple[Step, ...]:
    base = {
        "TRANSFER_PRECHECK": ("FINISHED", 1.0),
        "STRUCT_TRANSFER": ("FINISHED", 1.0),
        "FULL_TRANSFER": ("FINISHED", 1.0),
        "FULL_VERIFIER": ("RUNNING", 1.0),  # ODC: done at 100 %, though still RUNNING
        "INCR_TRANSFER": ("MONITORING", None),
    }
    base.update(statuses)
    return tuple(Step(name, status, ratio) for name, (status, ratio) in base.items())


def ready_project(**changes: object) -> ProjectProgress:
    values: dict[str, object] = {
        "project_id": "np_ready",
        "api": Api.V4,
        "kind": Kind.MIGRATION,
        "status": "RUNNING",
        "raw_status": "RUNNING",
        "alarm_level": "HIGH",
        "current_step": "INCR_TRANSFER",
        "features": {"struct": True, "full": True, "incr": True, "full_verify": True},
        "struct_progress_ratio": 1.0,
        "full_progress_ratio": 1.0,
        "checkpoints": (Checkpoint("forward", NOW - 8, str(int(NOW - 8))),),  # polled at -5
        "details": ProjectDetails("np_ready", type="MIGRATION", alarming=False),
        "steps": steps(),
        "verification": verification(),
    }
    values.update(changes)
    return ProjectProgress(**values)  # type: ignore[arg-type]


def blockers(progress: ProjectProgress, *, now: float = NOW, up: bool = True) -> tuple[str, ...]:
    readiness = assess(
        progress, up=up, last_success_seconds=NOW - 5, now=now, interval_seconds=INTERVAL
    )
    assert [check.blocker for check in readiness.checks] == list(BLOCKERS)
    return readiness.blockers


def test_done_consistent_monitoring_and_3_s_behind_is_ready():
    readiness = assess(
        ready_project(), up=True, last_success_seconds=NOW - 5, now=NOW, interval_seconds=30
    )
    assert readiness.ready
    details = {check.blocker: check.detail for check in readiness.checks}
    assert details["lag"] == "lag 3 s at the last poll, of at most 30 s"
    assert details["verification_inconsistent"] == "0 different rows in 48 tables"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"verification": verification(different=17)}, ("verification_inconsistent",)),
        ({"verification": verification(inconsistent=2)}, ("verification_inconsistent",)),
        (
            {"steps": steps(FULL_TRANSFER=("RUNNING", 0.4), INCR_TRANSFER=("INIT", None))},
            ("full", "incr_not_running"),
        ),
        ({"steps": steps(FULL_VERIFIER=("RUNNING", 0.37))}, ("verification_running",)),
        ({"checkpoints": (Checkpoint("forward", NOW - 42, ""),)}, ("lag",)),
        ({"checkpoints": ()}, ("lag",)),  # INCR_TRANSFER MONITORING, but no position
        ({"status": "SUSPEND"}, ("status",)),
        ({"details": ProjectDetails("np_ready", alarming=True)}, ("alarming",)),
        ({"steps": steps(STRUCT_TRANSFER=("FAILED", 0.5))}, ("struct",)),
    ],
)
def test_each_blocker_holds_alone(changes: dict[str, object], expected: tuple[str, ...]):
    assert blockers(ready_project(**changes)) == expected


def test_a_frozen_oms_turns_a_ready_project_stale_not_lagging_before():
    """The lag is the one OMS reported at the last poll: the poll's age is stale's to judge.

    Counted from the time of asking, a healthy migration 3 s behind read 33 s behind just
    before the next poll, and with the default 30 s of max lag was not ready late in
    every poll interval.
    """
    project = ready_project()
    assert blockers(project) == ()
    assert blockers(project, now=NOW - 5 + 2 * INTERVAL) == ()  # just before stale
    assert blockers(project, now=NOW - 5 + 2 * INTERVAL + 1) == ("stale",)
    assert blockers(project, up=False) == ("stale",)
    stuck = ready_project(checkpoints=(Checkpoint("forward", NOW - 40, ""),))
    assert blockers(stuck) == ("lag",)  # polled 35 s behind: OMS itself lags


def test_only_migrations_with_incremental_sync_cut_over():
    assert applies(ready_project())
    assert not applies(ready_project(kind=Kind.SYNC))
    assert not applies(ready_project(features={"incr": False}))
    assert not applies(None)


def test_on_3_3_verification_is_unknown_and_the_progress_api_decides():
    project = ready_project(api=Api.V3_MIGRATION, steps=None, verification=None, details=None)
    readiness = assess(
        project, up=True, last_success_seconds=NOW, now=NOW, interval_seconds=INTERVAL
    )
    assert readiness.ready
    unknown = [check.blocker for check in readiness.checks if check.blocked is None]
    assert unknown == ["verification_running", "verification_inconsistent"]
    in_full = replace(project, full_progress_ratio=0.6)
    assert blockers(in_full) == ("full",)


def test_verification_not_enabled_passes_both_verification_checks():
    project = ready_project(features={"struct": True, "full": True, "incr": True})
    assert blockers(replace(project, verification=None)) == ()


def test_a_finished_verification_whose_result_is_unknown_blocks():
    """The Action refused or failing: no cut-over on a verification nobody has read."""
    readiness = assess(
        ready_project(verification=None),
        up=True,
        last_success_seconds=NOW,
        now=NOW,
        interval_seconds=INTERVAL,
    )
    assert readiness.blockers == ("verification_inconsistent",)
    (check,) = [c for c in readiness.checks if c.blocker == "verification_inconsistent"]
    assert check.detail == "verification done, its result unknown"


@settings(max_examples=300, deadline=None)
@given(
    up=st.booleans(),
    last_success=st.none() | st.floats(NOW - 300, NOW + 300),
    checkpoint=st.none() | st.floats(NOW - 300, NOW + 300),
    interval=st.floats(1, 120),
    max_lag=st.floats(0, 300),
    times=st.lists(st.floats(NOW - 600, NOW + 600), min_size=1, max_size=20),
)
def test_verdicts_kept_over_their_span_are_those_decided_afresh(
    up: bool,
    last_success: float | None,
    checkpoint: float | None,
    interval: float,
    max_lag: float,
    times: list[float],
):
    """A scrape whose time is in the span keeps the verdicts; the clock may also go back."""
    stale_from = last_success + 2 * interval if last_success is not None else None
    kept: tuple[bool, bool] | None = None
    span = (math.inf, -math.inf)
    for now in times:
        if not span[0] < now <= span[1]:
            stale, lag, span = clock_blocked_span(
                up=up,
                last_success_seconds=last_success,
                checkpoint_seconds=checkpoint,
                now=now,
                interval_seconds=interval,
                max_lag_seconds=max_lag,
            )
            kept = (stale, lag)
        # Decided afresh; within rounding of the limit, ``now - a > b`` and ``now > a + b``
        # may differ.
        fresh_stale = not up or last_success is None or now - last_success > 2 * interval
        fresh_lag = (
            checkpoint is None
            or last_success is None
            or max(0.0, last_success - checkpoint) > max_lag
        )
        at_a_limit = stale_from is not None and abs(now - stale_from) < 1e-6
        assert kept == (fresh_stale, fresh_lag) or at_a_limit
