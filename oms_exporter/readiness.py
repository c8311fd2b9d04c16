"""Can this migration cut over now? The blockers, from what the last poll learned.

One module decides, for /metrics (at scrape time), the status page and the
``oms-exporter cutover`` command alike. Most checks depend only on the polled progress
and are computed when it changes (``settled_checks``); the two that depend on the last
success, ``stale`` and ``lag``, are computed at the moment of asking (``assess``), so a
frozen OMS never looks ready. The lag is the one OMS reported at the last poll; the poll's
age is ``stale``'s to judge. The facts follow ODC's ProjectStepResultChecker: structure and full
transfer FINISHED, full verification at 100 %, INCR_TRANSFER in MONITORING.

On OMS 3.3 there are no step details: ``verification_running`` and
``verification_inconsistent`` are unknown there (reported, never blocking), structure and
full transfer come from the progress percentages, and ``incr_not_running`` from the
project's status and a forward checkpoint being present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from oms_exporter.model import Kind, ProjectProgress, Step

BLOCKERS: Final = (
    "stale",
    "status",
    "struct",
    "full",
    "verification_running",
    "verification_inconsistent",
    "incr_not_running",
    "lag",
    "alarming",
)
DEFAULT_MAX_LAG_SECONDS: Final = 30.0
_STRUCT_STEPS: Final = ("STRUCT_TRANSFER", "STRUCT_MIGRATION")
_FULL_STEPS: Final = ("FULL_TRANSFER", "FULL_MIGRATION")
VERIFY_STEP: Final = "FULL_VERIFIER"
_INCR_STEP: Final = "INCR_TRANSFER"
_STEADY_INCR: Final = "MONITORING"


@dataclass(frozen=True, slots=True)
class Check:
    """One blocker's verdict: True blocks, False passes, None is unknown here (3.3)."""

    blocker: str
    blocked: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    """Every blocker's check, in BLOCKERS order."""

    checks: tuple[Check, ...]

    @property
    def blockers(self) -> tuple[str, ...]:
        return tuple(check.blocker for check in self.checks if check.blocked)

    @property
    def ready(self) -> bool:
        return not self.blockers


def applies(progress: ProjectProgress | None) -> bool:
    """Only migrations with incremental sync cut over; sync projects never do."""
    return (
        progress is not None
        and progress.kind is Kind.MIGRATION
        and progress.features.get("incr", False)
    )


def _step(steps: tuple[Step, ...] | None, names: tuple[str, ...]) -> Step | None:
    for step in steps or ():
        if step.name in names:
            return step
    return None


def verifier(steps: tuple[Step, ...] | None) -> Step | None:
    """The FULL_VERIFIER step, if the project has one."""
    return _step(steps, (VERIFY_STEP,))


def verification_settled(step: Step) -> bool:
    """FINISHED, or at 100 % (ODC: it may stay RUNNING): its result no longer changes."""
    return step.status == "FINISHED" or (step.progress_ratio or 0.0) >= 1.0


def _percent(ratio: float | None) -> str:
    return "no progress reported" if ratio is None else f"{ratio * 100:.0f} %"


def _transfer(progress: ProjectProgress, feature: str, names: tuple[str, ...]) -> Check:
    blocker = "struct" if feature == "struct" else "full"
    what = "structure" if feature == "struct" else "full"
    if not progress.features.get(feature, False):
        return Check(blocker, False, f"{what} transfer not enabled")
    step = _step(progress.steps, names)
    if step is not None:
        done = step.status == "FINISHED"
        return Check(blocker, not done, f"{what} {step.status}, {_percent(step.progress_ratio)}")
    ratio = progress.struct_progress_ratio if feature == "struct" else progress.full_progress_ratio
    return Check(blocker, ratio is None or ratio < 1.0, f"{what} {_percent(ratio)}")


def _verification_running(progress: ProjectProgress) -> Check:
    if not progress.features.get("full_verify", False):
        return Check("verification_running", False, "full verification not enabled")
    if progress.steps is None:
        return Check("verification_running", None, "unknown: no step details (OMS 3.3)")
    step = verifier(progress.steps)
    if step is None:
        return Check("verification_running", True, "no FULL_VERIFIER step yet")
    done = verification_settled(step)
    return Check(
        "verification_running",
        not done,
        f"verification {step.status}, {_percent(step.progress_ratio)}",
    )


def _verification_inconsistent(progress: ProjectProgress) -> Check:
    if not progress.features.get("full_verify", False):
        return Check("verification_inconsistent", False, "full verification not enabled")
    result = progress.verification
    if result is None:
        step = verifier(progress.steps)
        if step is not None and verification_settled(step):
            # Done, yet nobody has seen the result (the Action refused or failing): a
            # cut-over decision must not pass on a verification it cannot read.
            return Check("verification_inconsistent", True, "verification done, its result unknown")
        known = progress.steps is not None
        return Check(
            "verification_inconsistent",
            None,
            "no verification result yet" if known else "unknown: no step details (OMS 3.3)",
        )
    different = result.different_rows or 0.0
    bad = result.inconsistent_tables
    detail = f"{different:.0f} different rows in {result.table_count} tables"
    if bad:
        detail += f", {bad} tables neither consistent nor empty on both sides"
    return Check("verification_inconsistent", different > 0 or bad > 0, detail)


def _incr_not_running(progress: ProjectProgress) -> Check:
    step = _step(progress.steps, (_INCR_STEP,))
    if step is not None:
        return Check(
            "incr_not_running",
            step.status != _STEADY_INCR,
            f"INCR_TRANSFER {step.status}",
        )
    forward = any(p.direction == "forward" and p.seconds for p in progress.checkpoints)
    running = progress.status == "RUNNING" and forward
    detail = "incremental sync reports a checkpoint" if forward else "no incremental checkpoint"
    return Check("incr_not_running", not running, detail)


def _alarming(progress: ProjectProgress) -> Check:
    alarming = progress.details.alarming if progress.details is not None else None
    if alarming is None:
        return Check("alarming", False, "OMS alarm state unknown (discovery did not list it)")
    return Check("alarming", alarming, "OMS is alarming" if alarming else "OMS is not alarming")


def settled_checks(progress: ProjectProgress) -> tuple[Check, ...]:
    """The checks that depend only on the polled progress: computed once per change."""
    status = progress.status
    return (
        Check("status", status != "RUNNING", f"status {status}"),
        _transfer(progress, "struct", _STRUCT_STEPS),
        _transfer(progress, "full", _FULL_STEPS),
        _verification_running(progress),
        _verification_inconsistent(progress),
        _incr_not_running(progress),
        _alarming(progress),
    )


def checkpoints_read(progress: ProjectProgress) -> tuple[tuple[str, bool], ...]:
    """All that settled_checks reads of the checkpoints: which directions report one.

    Where two answers differ only in their checkpoints and this is equal, the settled
    checks are equal too: steady incremental sync need not decide them again each poll.
    """
    return tuple((point.direction, bool(point.seconds)) for point in progress.checkpoints)


def forward_checkpoint(progress: ProjectProgress) -> float | None:
    for point in progress.checkpoints:
        if point.direction == "forward" and point.seconds is not None:
            return point.seconds
    return None


def clock_checks(
    *,
    up: bool,
    last_success_seconds: float | None,
    checkpoint_seconds: float | None,
    now: float,
    interval_seconds: float,
    max_lag_seconds: float,
) -> tuple[Check, Check]:
    """``stale`` and ``lag``: what depends on the last success, with their details."""
    stale_blocked, lag_blocked, _span = clock_blocked_span(
        up=up,
        last_success_seconds=last_success_seconds,
        checkpoint_seconds=checkpoint_seconds,
        now=now,
        interval_seconds=interval_seconds,
        max_lag_seconds=max_lag_seconds,
    )
    if not up or last_success_seconds is None:
        stale = Check("stale", stale_blocked, "the last poll failed")
    else:
        stale = Check("stale", stale_blocked, f"polled {now - last_success_seconds:.0f} s ago")
    if checkpoint_seconds is None:
        lag = Check("lag", lag_blocked, "no incremental checkpoint")
    elif last_success_seconds is None:
        lag = Check("lag", lag_blocked, "no poll has succeeded")
    else:
        seconds = polled_lag(last_success_seconds, checkpoint_seconds)
        lag = Check(
            "lag",
            lag_blocked,
            f"lag {seconds:.0f} s at the last poll, of at most {max_lag_seconds:g} s",
        )
    return stale, lag


def polled_lag(last_success_seconds: float, checkpoint_seconds: float) -> float:
    """The forward lag when OMS was last asked: what readiness compares with the limit.

    Not counted from the time of asking: the checkpoint is read once a poll interval, so
    the scrape's time would add up to an interval (30 s by default, as much as the
    default max lag) and turn a healthy migration not ready late in every interval. A
    poll that stops coming is ``stale``'s to catch.
    """
    return max(0.0, last_success_seconds - checkpoint_seconds)


def clock_blocked_span(
    *,
    up: bool,
    last_success_seconds: float | None,
    checkpoint_seconds: float | None,
    now: float,
    interval_seconds: float,
    max_lag_seconds: float,
) -> tuple[bool, bool, tuple[float, float]]:
    """The verdicts of ``stale`` and ``lag``, and the times ``(after, until]`` they hold for.

    ``stale`` starts to block once the time passes the last success plus two poll
    intervals (or blocks whatever the time); ``lag`` depends on the last poll alone
    (``polled_lag``). Until what they read changes, a scrape whose time is in the span
    can keep the verdicts: at 10,000 projects deciding them all again took most of a
    scrape's own work.
    """
    if not up or last_success_seconds is None:
        stale, span = True, (-math.inf, math.inf)
    else:
        stale_from = last_success_seconds + 2 * interval_seconds
        stale = now > stale_from
        span = (stale_from, math.inf) if stale else (-math.inf, stale_from)
    lag = (
        checkpoint_seconds is None
        or last_success_seconds is None
        or polled_lag(last_success_seconds, checkpoint_seconds) > max_lag_seconds
    )
    return stale, lag, span


def assemble(settled: tuple[Check, ...], clock: tuple[Check, Check]) -> Readiness:
    """Every check, in BLOCKERS order."""
    by_name = {check.blocker: check for check in (*settled, *clock)}
    return Readiness(tuple(by_name[name] for name in BLOCKERS))


def assess(
    progress: ProjectProgress,
    *,
    up: bool,
    last_success_seconds: float | None,
    now: float,
    interval_seconds: float,
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
) -> Readiness:
    """The whole verdict at ``now``, for the status page and the `cutover` command."""
    clock = clock_checks(
        up=up,
        last_success_seconds=last_success_seconds,
        checkpoint_seconds=forward_checkpoint(progress),
        now=now,
        interval_seconds=interval_seconds,
        max_lag_seconds=max_lag_seconds,
    )
    return assemble(settled_checks(progress), clock)
