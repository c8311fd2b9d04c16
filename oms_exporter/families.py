"""Every per-project metric in one table: name, HELP, type, and how to compute its samples.

Reviewing the metrics contract happens here; golden tests compare the exposition lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from prometheus_client.utils import floatToGoString

from oms_exporter.model import (
    FEATURES,
    UNKNOWN,
    VERIFY_RESULTS,
    VERIFY_ROW_KINDS,
    FullTransfer,
    FullVerification,
    ProjectDetails,
    Step,
    clean_text,
)
from oms_exporter.store import ProjectState

# (extra label text such as ',status="RUNNING"', value)
Sample = tuple[str, float]
MetricType = Literal["gauge", "counter", "info"]


def escape_label(value: str) -> str:
    """Escape a label value; a lone surrogate (from a non-UTF-8 environment) is repaired."""
    value = clean_text(value)
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str, *, openmetrics: bool) -> str:
    """Escape HELP as prometheus_client does: OpenMetrics also escapes the double quote."""
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
    return escaped.replace('"', '\\"') if openmetrics else escaped


@lru_cache(maxsize=4096)
def label(name: str, value: str) -> str:
    """``,name="value"``, escaped. Cached: the values are step names, statuses, features
    and the like, a few dozen in all, and escaping them for every project's lines was a
    quarter of rendering 10,000 new projects; bounded, as OMS could send endless names."""
    return f',{name}="{escape_label(value)}"'


def format_value(value: float) -> str:
    """Python's repr of a finite float is valid exposition; Go spells the others."""
    if math.isfinite(value):
        return repr(float(value))
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    type: MetricType
    samples: Callable[[ProjectState], Iterable[Sample]]
    # Withheld once a failing project's last success is older than the stale window.
    hidden_when_stale: bool = False


def _up(state: ProjectState) -> Iterable[Sample]:
    yield "", 1.0 if state.up else 0.0


def _status(state: ProjectState) -> Iterable[Sample]:
    # One series, the status a label, always 1: a one-hot over 12 statuses would be a
    # quarter of a project's budget of 45 samples, 11 of them zeros. Rules and panels ask
    # `oms_project_status{status="FAILED"} == 1`, which reads the same either way.
    if state.progress is not None:
        yield label("status", state.progress.status), 1.0


def _step(state: ProjectState) -> Iterable[Sample]:
    if state.progress is not None and state.progress.current_step is not None:
        yield label("step", state.progress.current_step), 1.0


def _info(state: ProjectState) -> Iterable[Sample]:
    progress = state.progress
    if progress is None:
        return
    details = progress.details or ProjectDetails(progress.project_id)
    labels = (
        label("api", progress.api.value)
        + label("kind", progress.kind.value)
        + label("alarm_level", progress.alarm_level)
    )
    # 4.x-only facts; an empty label is no label in PromQL, so leave unknown ones out.
    for name, value in (
        ("name", details.name),
        ("type", details.type),
        ("source_type", details.source_type),
        ("sink_type", details.sink_type),
        ("labels", details.labels),
    ):
        if value:
            labels += label(name, value)
    yield labels, 1.0


def _features(state: ProjectState) -> Iterable[Sample]:
    if state.progress is None:
        return
    for feature in FEATURES:
        yield label("feature", feature), 1.0 if state.progress.features[feature] else 0.0


def _struct_progress(state: ProjectState) -> Iterable[Sample]:
    if state.progress is not None and state.progress.struct_progress_ratio is not None:
        yield "", state.progress.struct_progress_ratio


def _full_progress(state: ProjectState) -> Iterable[Sample]:
    if state.progress is not None and state.progress.full_progress_ratio is not None:
        yield "", state.progress.full_progress_ratio


def _checkpoints(state: ProjectState) -> Iterable[Sample]:
    if state.progress is None:
        return
    for point in state.progress.checkpoints:
        if point.seconds is not None:
            yield label("direction", point.direction), point.seconds


def _steps(state: ProjectState) -> Iterable[Step]:
    if state.progress is not None and state.progress.steps is not None:
        yield from state.progress.steps


# A step's progress is published only in these statuses: FINISHED is at 1 and INIT at 0 by
# definition, and a MONITORING step (incremental sync, steady) reports 100 while it runs.
_PROGRESSING_STEPS: Final = frozenset({"RUNNING", "FAILED", "SUSPEND", UNKNOWN})
# Rates, latencies and the ETA of a full transfer mean something only while it runs.
_RUNNING_STEP: Final = "RUNNING"


def _step_progress(state: ProjectState) -> Iterable[Sample]:
    for step in _steps(state):
        if step.progress_ratio is not None and step.status in _PROGRESSING_STEPS:
            yield label("step", step.name), step.progress_ratio


def _step_status(state: ProjectState) -> Iterable[Sample]:
    # One series per step, its status a label, always 1: a one-hot over 7 statuses would
    # be 70 series for 10 steps, the bulk of a project's samples.
    for step in _steps(state):
        yield label("step", step.name) + label("status", step.status), 1.0


def _full_transfer(
    value: Callable[[FullTransfer], float | None], *, while_running: bool = False
) -> Callable[[ProjectState], Iterable[Sample]]:
    def samples(state: ProjectState) -> Iterable[Sample]:
        for step in _steps(state):
            if while_running and step.status != _RUNNING_STEP:
                continue
            if step.full_transfer is not None:
                number = value(step.full_transfer)
                if number is not None:
                    yield label("step", step.name), number

    return samples


def _alarming(state: ProjectState) -> Iterable[Sample]:
    details = state.progress.details if state.progress is not None else None
    if details is not None and details.alarming is not None:
        yield "", 1.0 if details.alarming else 0.0


def _checkpoint_samples(state: ProjectState) -> Iterable[Sample]:
    if state.progress is None:
        return
    for point in state.progress.checkpoint_samples:
        if point.seconds is not None:
            yield label("direction", point.direction), point.seconds


def _verification(state: ProjectState) -> FullVerification | None:
    return state.progress.verification if state.progress is not None else None


def _verify_different(state: ProjectState) -> Iterable[Sample]:
    result = _verification(state)
    if result is not None and result.different_rows is not None:
        yield "", result.different_rows


def _verify_rows(state: ProjectState) -> Iterable[Sample]:
    result = _verification(state)
    if result is not None:
        for kind in VERIFY_ROW_KINDS:
            yield label("kind", kind), result.rows.get(kind, 0.0)


def _verify_tables(state: ProjectState) -> Iterable[Sample]:
    result = _verification(state)
    if result is not None:
        for outcome in VERIFY_RESULTS:
            yield label("result", outcome), float(result.tables_by_result.get(outcome, 0))


def _last_success(state: ProjectState) -> Iterable[Sample]:
    if state.last_success_seconds is not None:
        yield "", state.last_success_seconds


def _errors(state: ProjectState) -> Iterable[Sample]:
    for reason, count in sorted(state.errors.items()):
        yield label("reason", reason.value), float(count)


PROJECT_FAMILIES: Final[tuple[Family, ...]] = (
    Family("oms_project_up", "1 if the last poll of this project succeeded, else 0.", "gauge", _up),
    Family(
        "oms_project_status",
        "Project status reported by OMS as a label, always 1: one series per project; "
        "UNKNOWN for values this exporter does not know.",
        "gauge",
        _status,
    ),
    Family("oms_project_current_step", "Current step of the project, always 1.", "gauge", _step),
    Family(
        "oms_project_info",
        "Project facts: the API that answered, kind, OMS alarm (protection) level, and on 4.x "
        "its name, type, endpoint types and labels.",
        "info",
        _info,
    ),
    Family(
        "oms_project_feature_enabled",
        "1 if the project has this stage (struct, full, incr, reverse_incr, full_verify, "
        "incr_verify), else 0.",
        "gauge",
        _features,
    ),
    Family(
        "oms_project_struct_progress_ratio",
        "Structure migration progress, 0 to 1.",
        "gauge",
        _struct_progress,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_progress_ratio",
        "Full data migration progress, 0 to 1.",
        "gauge",
        _full_progress,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_incr_sync_checkpoint_timestamp_seconds",
        "Incremental sync checkpoint as unix time, when OMS reports a timestamp.",
        "gauge",
        _checkpoints,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_step_progress_ratio",
        "Progress of each RUNNING, FAILED, SUSPEND or UNKNOWN step of the project (4.x "
        "DescribeProjectSteps), 0 to 1; a FINISHED step is at 1, an INIT one at 0.",
        "gauge",
        _step_progress,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_step_status",
        "Status of each step of the project as a label, always 1: one series per step; "
        "UNKNOWN for values this exporter does not know.",
        "gauge",
        _step_status,
    ),
    Family(
        "oms_project_full_transfer_processed_rows",
        "Rows the full transfer (or full verification) step has processed.",
        "gauge",
        _full_transfer(lambda f: f.processed_rows),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_estimated_rows",
        "OMS's estimate of the rows the full transfer step will process; can be exceeded.",
        "gauge",
        _full_transfer(lambda f: f.estimated_rows),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_source_rows_per_second",
        "Rows per second read from the source during full transfer.",
        "gauge",
        _full_transfer(lambda f: f.source_rows_per_second, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_sink_rows_per_second",
        "Rows per second written to the sink during full transfer.",
        "gauge",
        _full_transfer(lambda f: f.sink_rows_per_second, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_source_bytes_per_second",
        "Bytes per second read from the source during full transfer or verification "
        "(OMS's srcIops).",
        "gauge",
        _full_transfer(lambda f: f.source_bytes_per_second, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_sink_bytes_per_second",
        "Bytes per second written to the sink during full transfer or verification "
        "(OMS's dstIops).",
        "gauge",
        _full_transfer(lambda f: f.sink_bytes_per_second, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_source_row_latency_seconds",
        "Seconds per row read from the source (OMS's srcRt, sent in milliseconds).",
        "gauge",
        _full_transfer(lambda f: f.source_row_latency_seconds, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_sink_row_latency_seconds",
        "Seconds per row written to the sink (OMS's dstRt, sent in milliseconds).",
        "gauge",
        _full_transfer(lambda f: f.sink_row_latency_seconds, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_transfer_eta_seconds",
        "Estimated seconds until full transfer ends: rows left over the sink's current rate.",
        "gauge",
        _full_transfer(lambda f: f.eta_seconds, while_running=True),
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_incr_sync_checkpoint_sample_timestamp_seconds",
        "When OMS last sampled the incremental checkpoint (INCR_TRANSFER's "
        "checkpointSampleTimestamp), unix time; OMS samples every 10 s, so one that stops "
        "advancing means OMS's own reporting is stuck.",
        "gauge",
        _checkpoint_samples,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_alarming",
        "1 if OMS itself is alarming for this project (ListProjects alarmStats), else 0; "
        "only when discovery lists the project.",
        "gauge",
        _alarming,
    ),
    Family(
        "oms_project_full_verify_different_rows",
        "Rows the full verification found different (OMS's differentNumber).",
        "gauge",
        _verify_different,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_verify_rows",
        "Rows of the full verification by kind (consistent, mismatched, source_only, "
        "dest_only), summed over its tables.",
        "gauge",
        _verify_rows,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_full_verify_tables",
        "Tables of the full verification by result; every result present.",
        "gauge",
        _verify_tables,
        hidden_when_stale=True,
    ),
    Family(
        "oms_project_last_success_timestamp_seconds",
        "Unix time of the last successful poll of this project.",
        "gauge",
        _last_success,
    ),
    Family(
        "oms_project_poll_errors",
        "Failed polls of this project by reason.",
        "counter",
        _errors,
    ),
)

LAG_FAMILY_NAME: Final = "oms_project_incr_sync_lag_seconds"
LAG_HELP: Final = (
    "Incremental sync lag: time of this scrape minus the checkpoint, 0 if the checkpoint is ahead."
)
READY_FAMILY_NAME: Final = "oms_project_cutover_ready"
READY_HELP: Final = (
    "1 when this migration could cut over now: no blocker holds (computed at scrape time "
    "from the last poll), else 0. Only migrations with incremental sync."
)
BLOCKED_FAMILY_NAME: Final = "oms_project_cutover_blocked"
BLOCKED_HELP: Final = (
    "1 for each cut-over blocker that holds now (stale, status, struct, full, "
    "verification_running, verification_inconsistent, incr_not_running, lag, alarming), "
    "0 for the others."
)
SKEW_FAMILY_NAME: Final = "oms_clock_skew_seconds"
SKEW_HELP: Final = (
    "How far the newest incremental checkpoint of this OMS is ahead of the exporter's clock; "
    "above 0 means OMS's clock runs ahead."
)


def sample_name(family: Family) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def header(family: Family, *, openmetrics: bool, poll_note: str) -> str:
    """Render HELP and TYPE; OpenMetrics names counters and info without their suffix."""
    name = family.name
    kind: str = family.type
    if kind == "info":
        if openmetrics:
            name = name.removesuffix("_info")
        else:
            kind = "gauge"
    elif kind == "counter" and not openmetrics:
        name = sample_name(family)
    text = escape_help(f"{family.help} {poll_note}", openmetrics=openmetrics)
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


def render_family(family: Family, state: ProjectState, base_labels: str) -> str:
    """Render one project's lines of one family."""
    name = sample_name(family)
    return "".join(
        [
            f"{name}{{{base_labels}{extra}}} {format_value(value)}\n"
            for extra, value in family.samples(state)
        ]
    )


def base_labels(state: ProjectState) -> str:
    return f'oms="{escape_label(state.oms)}",project_id="{escape_label(state.project_id)}"'
