"""Deterministic OMS projects: what each one answers at a given moment, without any I/O.

A project's answer is a pure function of its definition, the current unix time and the
time the simulator started, so tests move projects through their lifecycle by moving an
injected clock instead of sleeping.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple, get_args

Api = Literal["v4", "v3"]
Kind = Literal["migration", "sync"]

#: Per-project faults; transport faults are acted out by the app, data faults here.
Fault = Literal[
    "none",
    "hang",
    "slow",
    "http_500",
    "http_502_html",
    "broken_json",
    "success_false",
    "not_found",
    "oversized",
    "future_checkpoint",
    "pascal_case",
    "string_numbers",
    "out_of_range",
    # Hostile answers (issue 11): what a broken or malicious OMS or proxy could send.
    "surrogate_id",
    "surrogate_name",
    "surrogate_status",
    "huge_number",
    "deep_nesting",
    "deep_error_body",
    "huge_total",
    "gzip_bomb",
    "millisecond_checkpoint",
    "many_steps",
    "redirect",
]
FAULTS: Final = frozenset(get_args(Fault))
#: One line per fault, listed by `oms-exporter simulate --help`.
FAULT_HELP: Final[dict[str, str]] = {
    "none": "answer normally",
    "hang": "never answer (until the simulator stops)",
    "slow": "answer after slow_seconds",
    "http_500": "HTTP 500, plain text",
    "http_502_html": "HTTP 502, nginx's HTML page",
    "broken_json": "a truncated JSON body",
    "success_false": "success:false, CM service unavailable",
    "not_found": "success:false, project does not exist",
    "oversized": "4 MB of valid JSON",
    "future_checkpoint": "checkpoints an hour ahead of the clock",
    "pascal_case": "PascalCase keys, as through a cloud proxy",
    "string_numbers": "progress and checkpoints as strings",
    "out_of_range": "progress 5151 and 8897, as the documents' sample",
    "surrogate_id": "a lone surrogate escape (\\ud800) in the project's ID (4.x answers)",
    "surrogate_name": "a lone surrogate escape in the project's name (4.x)",
    "surrogate_status": "a lone surrogate escape in statuses and the current step",
    "huge_number": "progress values of 10^400 (a 401-digit integer literal)",
    "deep_nesting": "a value nested 200,000 levels deep in every answer about the project",
    "deep_error_body": "HTTP 500 whose JSON body nests 100,000 levels",
    "huge_total": "ListProjects totalCount 10^400 while the project is listed",
    "gzip_bomb": "500 kB of gzip (Content-Length set) inflating to 500 MB",
    "millisecond_checkpoint": "checkpoints in milliseconds",
    "many_steps": "DescribeProjectSteps with 10,000 more step names",
    "redirect": "HTTP 302 to another host (userinfo and query in the Location)",
}
#: Faults drawn at random for a `fault_rate` share of requests: the ones a retry cures.
TRANSIENT_FAULTS: Final = ("http_500", "http_502_html", "broken_json")

# Lifecycle phases, in order; durations in lifecycle seconds at time_scale 1.0.
PRECHECK, STRUCT, FULL, INCR, SWITCH = range(5)
PRECHECK_SECONDS: Final = 15.0
STRUCT_SECONDS: Final = 30.0
FULL_SECONDS: Final = 120.0
INCR_SECONDS: Final = 60.0  # a migration then waits in the app-switch step for cut-over
VERIFY_SECONDS: Final = 60.0  # full verification, alongside incremental sync
PREPARE_SECONDS: Final = 5.0  # TRANSFER_PREPARE: the end of the precheck
INDEX_SECONDS: Final = 15.0  # INDEX_TRANSFER: the end of the full transfer, table by table
ROW_BYTES: Final = 180  # average row size: OMS's *Iops figures are bytes per second

STEP_NAMES: Final[dict[tuple[Api, Kind], tuple[str, ...]]] = {
    ("v4", "migration"): (
        "TRANSFER_PRECHECK",
        "STRUCT_TRANSFER",
        "FULL_TRANSFER",
        "INCR_TRANSFER",
        "TRANSFER_APP_SWITCH",
    ),
    ("v4", "sync"): ("TRANSFER_PRECHECK", "STRUCT_TRANSFER", "FULL_TRANSFER", "INCR_TRANSFER"),
    ("v3", "migration"): (
        "PRE_CHECK",
        "STRUCT_MIGRATION",
        "FULL_MIGRATION",
        "INCR_SYNC",
        "APP_SWITCH",
    ),
    ("v3", "sync"): ("SYNC_PREPARE", "STRUCT_SYNC", "CONNECTOR_FULL_SYNC", "CONNECTOR_INCR_SYNC"),
}
SYBASE_CHECKPOINT: Final = "100,30"
FUTURE_SECONDS: Final = 3600
SURROGATE: Final = "\ud800"  # json.dumps writes it as the escape \ud800: valid JSON
HUGE_NUMBER: Final = 10**400
#: Stands for a deeply nested value; `render` splices in the brackets after json.dumps,
#: which would itself recurse too deeply on such a value.
DEEP_MARK: Final = "__sim_deep_nesting__"
DEEP_LEVELS: Final = 200_000
MANY_STEPS: Final = 10_000
#: The most steps a project can list: every 4.x step name but FULL_VERIFIER, which only
#: projects with full verification list (the exporter asks them for its result).
MAX_STEP_COUNT: Final = 10
BULK_STEP_COUNT: Final = 10  # what a benchmark's project costs the exporter: 10 steps


@dataclass(frozen=True, slots=True)
class ProjectDef:
    """One simulated project: its shape, where it is in its lifecycle, and any override."""

    id: str
    name: str
    kind: Kind
    importance: str = "MEDIUM"
    struct: bool = True
    full: bool = True
    incr: bool = True
    reverse: bool = False
    offset_seconds: float = 0.0  # lifecycle seconds already done when the simulator starts
    freeze_at_seconds: float | None = None  # lifecycle second where it stopped (FAILED, SUSPEND)
    status: str | None = None  # fixed status instead of the lifecycle's
    current_step: str | None = None  # reported step instead of the lifecycle's
    lag_seconds: float | None = None  # fixed incremental lag instead of the wave
    spiky: bool = False  # lag spikes of several minutes now and then
    sybase: bool = False  # checkpoint "fileId,fileOffset": no timestamp at all
    fault: Fault = "none"
    slow_seconds: float = 3.0
    deleted: bool = False
    phase_shift: float = 0.0  # 0..1: keeps the lag waves of many projects out of step
    capacity_rows: int = 2_000_000
    source_type: str = "MYSQL"
    sink_type: str = "OB_MYSQL"
    labels: tuple[str, ...] = ()
    full_verify: bool = False  # a FULL_VERIFIER step after the full transfer
    incr_verify: bool = False  # enableIncrVerify (an INCR_VERIFIER step only with step_count)
    verify_different_rows: int = 0  # rows the full verification finds different
    # Steps to list in 4.x (None: only the enabled phases' and FULL_VERIFIER): auxiliary
    # steps are added up to this count; a phase's own steps are never left out.
    step_count: int | None = None

    def __post_init__(self) -> None:
        if self.step_count is not None and not 1 <= self.step_count <= MAX_STEP_COUNT:
            raise ValueError(f"step_count must be 1 to {MAX_STEP_COUNT}, not {self.step_count}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a project reports at one moment, flavour-neutral."""

    status: str
    phase: int
    lifecycle_seconds: float
    struct_progress: int | str | None
    full_progress: int | str | None
    checkpoint: int | str | None
    reverse_checkpoint: int | str | None


def phase_ends(defn: ProjectDef) -> tuple[float, float, float, float]:
    """Return the lifecycle seconds at which precheck, struct, full and incr phases end."""
    precheck = PRECHECK_SECONDS
    struct = precheck + (STRUCT_SECONDS if defn.struct else 0.0)
    full = struct + (FULL_SECONDS if defn.full else 0.0)
    return precheck, struct, full, full + INCR_SECONDS


def step_name(api: Api, kind: Kind, phase: int) -> str:
    """Name a phase the way this flavour of OMS does (sync projects never switch apps)."""
    names = STEP_NAMES[(api, kind)]
    return names[min(phase, len(names) - 1)]


def lifecycle_seconds(defn: ProjectDef, *, elapsed_seconds: float, time_scale: float) -> float:
    """Place the project in its lifecycle, honouring freezes and step overrides."""
    t = elapsed_seconds * time_scale + defn.offset_seconds
    if defn.freeze_at_seconds is not None:
        t = min(t, defn.freeze_at_seconds)
    if defn.current_step is None:
        return t
    ends = phase_ends(defn)
    for names in (STEP_NAMES[("v4", defn.kind)], STEP_NAMES[("v3", defn.kind)]):
        if defn.current_step in names:
            phase = names.index(defn.current_step)
            if phase >= INCR:  # moving into incremental: let it run on from there
                return max(t, ends[FULL])
            start = ends[phase - 1] if phase else 0.0
            return (start + ends[phase]) / 2  # pinned mid-way through a finite phase
    return t


def _phase_of(defn: ProjectDef, t: float) -> int:
    precheck, struct, full, incr = phase_ends(defn)
    if t < precheck:
        return PRECHECK
    if t < struct:
        return STRUCT
    if t < full or not defn.incr:
        return FULL
    return INCR if defn.kind == "sync" or t < incr else SWITCH


def _percent(t: float, start: float, end: float) -> int:
    if t >= end:
        return 100
    return max(0, int(100 * (t - start) / (end - start)))


def lag_seconds(defn: ProjectDef, t: float) -> float:
    """Incremental lag: a smooth wave between 2 s and 90 s, plus the occasional spike."""
    if defn.lag_seconds is not None:
        return defn.lag_seconds
    wave = 2.0 + 88.0 * (1 - math.cos(2 * math.pi * (t / 600.0 + defn.phase_shift))) / 2
    if defn.spiky:
        into = t % 900.0
        if into < 180.0:  # a 3-minute bump peaking at 6 minutes of extra lag
            wave += 360.0 * math.sin(math.pi * into / 180.0)
    return wave


def snapshot(defn: ProjectDef, *, now: float, started_at: float, time_scale: float) -> Snapshot:
    """Compute what the project reports at unix time `now`."""
    elapsed = now - started_at
    free_t = elapsed * time_scale + defn.offset_seconds
    t = lifecycle_seconds(defn, elapsed_seconds=elapsed, time_scale=time_scale)
    precheck, struct_end, full_end, incr_end = phase_ends(defn)
    phase = _phase_of(defn, t)
    status = defn.status
    if status is None:
        finished = not defn.incr and t >= full_end
        status = "INIT" if t < 0 else "FINISHED" if finished else "RUNNING"
    struct = _percent(t, precheck, struct_end) if defn.struct else None
    full = _percent(t, struct_end, full_end) if defn.full else None
    stopped = free_t if defn.freeze_at_seconds is None else min(free_t, defn.freeze_at_seconds)
    wall_at_t = now - (free_t - stopped) / time_scale  # a frozen project's clock stopped too
    checkpoint: int | str | None = None
    reverse: int | None = None
    if defn.incr:
        if t < full_end:
            checkpoint = 0
        elif defn.sybase:
            checkpoint = SYBASE_CHECKPOINT
        else:
            checkpoint = int(wall_at_t - lag_seconds(defn, t))
    if defn.reverse and defn.kind == "migration":
        reverse = 0
        if t >= incr_end:
            reverse_wave = 1 - math.cos(2 * math.pi * (t / 300.0 + defn.phase_shift))
            reverse = int(wall_at_t - 1.0 - 3.5 * reverse_wave)
    snap = Snapshot(status, phase, t, struct, full, checkpoint, reverse)
    return _with_data_fault(defn, snap, now)


def _with_data_fault(defn: ProjectDef, snap: Snapshot, now: float) -> Snapshot:
    if defn.fault == "future_checkpoint":
        ahead = int(now) + FUTURE_SECONDS
        return replace(
            snap,
            checkpoint=ahead if defn.incr else None,
            reverse_checkpoint=ahead if snap.reverse_checkpoint is not None else None,
        )
    if defn.fault == "out_of_range":  # the values of the documents' own sample
        return replace(
            snap,
            struct_progress=5151 if defn.struct else None,
            full_progress=8897 if defn.full else None,
        )
    if defn.fault == "huge_number":
        return replace(
            snap,
            struct_progress=HUGE_NUMBER if defn.struct else None,
            full_progress=HUGE_NUMBER if defn.full else None,
        )
    if defn.fault == "millisecond_checkpoint":
        return replace(
            snap,
            checkpoint=_milliseconds(snap.checkpoint),
            reverse_checkpoint=_milliseconds(snap.reverse_checkpoint),
        )
    if defn.fault == "string_numbers":
        return replace(
            snap,
            struct_progress=_str(snap.struct_progress),
            full_progress=_str(snap.full_progress),
            checkpoint=_str(snap.checkpoint),
            reverse_checkpoint=_str(snap.reverse_checkpoint),
        )
    return snap


def _str(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def _milliseconds(value: int | str | None) -> int | str | None:
    """A unix-seconds checkpoint in milliseconds; 0, None and Sybase positions unchanged."""
    return value * 1000 + 250 if isinstance(value, int) and value > 0 else value


def hostile(defn: ProjectDef, data: dict[str, object], *, id_key: str) -> dict[str, object]:
    """Act out the data faults that reach past the numbers: surrogates, deep nesting."""
    fault = defn.fault
    if fault == "surrogate_id" and id_key in data:
        data[id_key] = f"{defn.id}{SURROGATE}"
    elif fault == "surrogate_name" and "name" in data:
        data["name"] = f"{defn.name} {SURROGATE}"
    elif fault == "surrogate_status":
        for key in ("status", "currentStep"):
            if isinstance(data.get(key), str):
                data[key] = f"{data[key]}{SURROGATE}"
    elif fault == "deep_nesting":
        data["transferMapping"] = DEEP_MARK
    return data


def progress_data(api: Api, defn: ProjectDef, snap: Snapshot) -> dict[str, object]:
    """Render the `data` of a progress answer with exactly this flavour's field names."""
    data = _progress_fields(api, defn, snap)
    return data if defn.fault == "none" else hostile(defn, data, id_key="projectId")


def _progress_fields(api: Api, defn: ProjectDef, snap: Snapshot) -> dict[str, object]:
    step = defn.current_step or step_name(api, defn.kind, snap.phase)
    if api == "v4":
        return {
            "projectId": defn.id,
            "status": snap.status,
            "alarmLevel": defn.importance,
            "enableIncrSync": defn.incr,
            "currentStep": step,
            "incrSyncCheckpoint": snap.checkpoint,
            "enableStructTransfer": defn.struct,
            "enableFullTransfer": defn.full,
            "structTransferProgress": snap.struct_progress,
            "fullTransferProgress": snap.full_progress,
            "enableReverseIncrTransfer": defn.reverse and defn.kind == "migration",
            "reverseIncrTransferCheckpoint": snap.reverse_checkpoint,
        }
    if defn.kind == "sync":
        return {
            "status": snap.status,
            "importance": defn.importance,
            "enableStructSync": defn.struct,
            "enableFullSync": defn.full,
            "enableIncrSync": defn.incr,
            "currentStep": step,
            "structSyncProgress": snap.struct_progress,
            "fullSyncProgress": snap.full_progress,
            "incrSyncCheckpoint": _str(snap.checkpoint),  # a string on 3.3 sync projects
        }
    return {
        "status": snap.status,
        "importance": defn.importance,
        "enableStructMigration": defn.struct,
        "enableFullMigration": defn.full,
        "enableIncrSync": defn.incr,
        "enableReverseIncrSync": defn.reverse,
        "currentStep": step,
        "structMigrationProgress": snap.struct_progress,
        "fullMigrationProgress": snap.full_progress,
        "incrSyncCheckpoint": snap.checkpoint,
        "reverseIncrSyncCheckpoint": snap.reverse_checkpoint,
    }


def iso(ts: float) -> str:
    """A UTC time the way OMS writes it: ``2024-09-13T09:08:34``, no zone."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


#: Every 4.x step name (ODC's OmsStepName), in the order OMS lists the steps, and its text.
_STEP_TEXT: Final[dict[str, str]] = {
    "TRANSFER_PRECHECK": "Pre-check",
    "TRANSFER_PREPARE": "Transfer preparation",
    "STRUCT_TRANSFER": "Schema transfer",
    "TRANSFER_INCR_LOG_PULL": "Incremental log pull",
    "FULL_TRANSFER": "Full data transfer",
    "INDEX_TRANSFER": "Index transfer",
    "FULL_VERIFIER": "Full verification",
    "INCR_TRANSFER": "Incremental data transfer",
    "INCR_VERIFIER": "Incremental verification",
    "TRANSFER_APP_SWITCH": "Application switchover",
    "REVERSE_INCR_TRANSFER": "Reverse incremental transfer",
}
V4_STEP_ORDER: Final = tuple(_STEP_TEXT)


def steps_data(
    defn: ProjectDef, snap: Snapshot, *, now: float, started_at: float, time_scale: float
) -> list[dict[str, object]]:
    """Render 4.x DescribeProjectSteps: one entry per enabled step, FULL with row counts."""
    steps = project_steps(defn, snap, started_at=started_at, time_scale=time_scale)
    return steps if defn.fault == "none" else _hostile_steps(defn, steps)


def project_steps(
    defn: ProjectDef, snap: Snapshot, *, started_at: float, time_scale: float
) -> list[dict[str, object]]:
    """The steps as OMS lists them (in DescribeProjectSteps and in each ListProjects item)."""
    ends = phase_ends(defn)
    t = snap.lifecycle_seconds
    wanted = [PRECHECK, STRUCT, FULL, INCR, SWITCH][: 5 if defn.kind == "migration" else 4]
    enabled = {STRUCT: defn.struct, FULL: defn.full, INCR: defn.incr, SWITCH: defn.incr}
    steps: list[dict[str, object]] = []
    for phase in wanted:
        if not enabled.get(phase, True):
            continue
        start = ends[phase - 1] if phase else 0.0
        end = ends[phase] if phase < SWITCH else math.inf
        if phase == INCR and defn.kind == "sync":
            end = math.inf
        status = "INIT" if t < start or t < 0 else "FINISHED" if t >= end else "RUNNING"
        if status == "RUNNING" and snap.status in ("FAILED", "SUSPEND", "FINISHED"):
            status = snap.status
        if phase == INCR and t >= end:
            status = "MONITORING"  # incremental keeps running while waiting for cut-over
        progress = 100 if t >= end else 0 if phase >= INCR else _percent(t, start, end)
        if phase == INCR and t >= start:
            progress = 100
        step = _step(len(steps) + 1, step_name("v4", defn.kind, phase))
        step.update(
            status=status,
            progress=progress,
            startTime=_wall_iso(defn, start, started_at, time_scale) if t >= start else None,
            finishTime=_wall_iso(defn, end, started_at, time_scale) if t >= end else None,
            stepInfo=_step_info(defn, snap, phase, t, start),
        )
        _fail(defn, step, t=t, started_at=started_at, time_scale=time_scale)
        steps.append(step)
        if phase == FULL and defn.full_verify:
            steps.append(
                _verifier(
                    defn,
                    snap,
                    len(steps) + 1,
                    start=end,
                    started_at=started_at,
                    time_scale=time_scale,
                )
            )
    if defn.step_count is None:
        return steps
    return _with_auxiliary_steps(defn, snap, steps, started_at=started_at, time_scale=time_scale)


_INCREMENTAL_STEPS: Final = (
    "TRANSFER_INCR_LOG_PULL",
    "INCR_TRANSFER",
    "INCR_VERIFIER",
    "TRANSFER_APP_SWITCH",
    "REVERSE_INCR_TRANSFER",
)


class _Auxiliary(NamedTuple):
    """A step beside the lifecycle phases': when it runs and how it settles."""

    rank: int  # 0: of a feature the project has; 1: of one it lacks; 2: only to pad
    name: str
    start: float  # lifecycle second it starts (math.inf: never)
    end: float  # ... and settles, in `settled`
    settled: str = "FINISHED"


def _auxiliary(defn: ProjectDef) -> list[_Auxiliary]:
    """Every step but FULL_VERIFIER, tied to the lifecycle (the phases' own ones unused)."""
    precheck, struct, full, incr = phase_ends(defn)
    never = math.inf
    migration = defn.kind == "migration"
    aux = [
        _Auxiliary(0, "TRANSFER_PREPARE", precheck - PREPARE_SECONDS, precheck),
        # Indexes are made table by table as the full transfer ends (with the schema if none).
        _Auxiliary(
            0 if defn.struct else 2, "INDEX_TRANSFER", max(precheck, full - INDEX_SECONDS), full
        ),
        # A disabled phase's step, only to pad: nothing to do, done when its phase would be.
        _Auxiliary(2, "STRUCT_TRANSFER", precheck, precheck),
        _Auxiliary(2, "FULL_TRANSFER", struct, struct),
    ]
    if not defn.incr:  # nothing incremental: done when the full transfer (and project) is
        return [*aux, *(_Auxiliary(2, name, full, full) for name in _INCREMENTAL_STEPS)]
    aux.append(_Auxiliary(0, "TRANSFER_INCR_LOG_PULL", precheck, full, "MONITORING"))
    if defn.incr_verify:
        aux.append(_Auxiliary(0, "INCR_VERIFIER", full, full, "MONITORING"))
    else:
        aux.append(_Auxiliary(1, "INCR_VERIFIER", never, never))
    if migration and defn.reverse:  # started with the switchover, as its checkpoint is
        aux.append(_Auxiliary(0, "REVERSE_INCR_TRANSFER", incr, incr, "MONITORING"))
    else:
        aux.append(_Auxiliary(1 if migration else 2, "REVERSE_INCR_TRANSFER", never, never))
    return [*aux, _Auxiliary(2, "TRANSFER_APP_SWITCH", never, never)]  # a sync never switches


def _with_auxiliary_steps(
    defn: ProjectDef,
    snap: Snapshot,
    steps: list[dict[str, object]],
    *,
    started_at: float,
    time_scale: float,
) -> list[dict[str, object]]:
    """Add the most realistic auxiliary steps up to `step_count`, all in OMS's order."""
    listed = {step["name"] for step in steps}
    wanted = sorted(
        (aux for aux in _auxiliary(defn) if aux.name not in listed),
        key=lambda aux: (aux.rank, V4_STEP_ORDER.index(aux.name)),
    )[: max(0, (defn.step_count or 0) - len(steps))]
    steps += [
        _auxiliary_step(defn, snap, aux, started_at=started_at, time_scale=time_scale)
        for aux in wanted
    ]
    steps.sort(key=lambda step: V4_STEP_ORDER.index(str(step["name"])))
    for order, step in enumerate(steps, 1):
        step["order"] = order
    return steps


def _auxiliary_step(
    defn: ProjectDef, snap: Snapshot, aux: _Auxiliary, *, started_at: float, time_scale: float
) -> dict[str, object]:
    """Render an auxiliary step: no stepInfo, progress 0 until it starts, 100 settled."""
    t = snap.lifecycle_seconds
    step = _step(0, aux.name)
    if t < 0 or t < aux.start:
        return step
    status, progress = aux.settled, 100
    if t < aux.end:
        status, progress = "RUNNING", _percent(t, aux.start, aux.end)
        if snap.status in ("FAILED", "SUSPEND", "FINISHED"):
            status = snap.status
            progress = 100 if status == "FINISHED" else progress
    done = status == "FINISHED"
    step.update(
        status=status,
        progress=progress,
        startTime=_wall_iso(defn, aux.start, started_at, time_scale),
        finishTime=_wall_iso(defn, min(t, aux.end), started_at, time_scale) if done else None,
    )
    _fail(defn, step, t=t, started_at=started_at, time_scale=time_scale)
    return step


def _step(order: int, name: str) -> dict[str, object]:
    return {
        "order": order,
        "name": name,
        "description": _STEP_TEXT[name],
        "status": "INIT",
        "extraInfo": {
            "errorDetails": None,
            "errorCode": None,
            "errorMsg": None,
            "errorParam": None,
            "failedTime": None,
        },
        "startTime": None,
        "finishTime": None,
        "progress": 0,
        "stepInfo": None,
    }


def _fail(
    defn: ProjectDef, step: dict[str, object], *, t: float, started_at: float, time_scale: float
) -> None:
    """Say in extraInfo why a FAILED step failed, as OMS does."""
    if step["status"] != "FAILED":
        return
    step["extraInfo"] = {
        "errorDetails": None,
        "errorCode": "GHANA-OPERAT000002",
        "errorMsg": "Transfer task exited abnormally",
        "errorParam": None,
        "failedTime": _wall_iso(defn, t, started_at, time_scale),
    }


def _verifier(
    defn: ProjectDef,
    snap: Snapshot,
    order: int,
    *,
    start: float,
    started_at: float,
    time_scale: float,
) -> dict[str, object]:
    """FULL_VERIFIER: compares every row after the full transfer, alongside incremental."""
    t = snap.lifecycle_seconds
    end = start + VERIFY_SECONDS
    step = _step(order, "FULL_VERIFIER")
    done = _percent(t, start, end) if t >= start else 0
    status = "INIT" if t < start else "FINISHED" if t >= end else "RUNNING"
    if snap.status == "FINISHED":
        status, done = "FINISHED", 100
    elif status == "RUNNING" and snap.status in ("FAILED", "SUSPEND"):
        status = snap.status
    running = status == "RUNNING"
    rps = int(defn.capacity_rows * 1.03 / VERIFY_SECONDS) if running else 0
    step.update(
        status=status,
        progress=done if status != "INIT" else None,
        startTime=_wall_iso(defn, start, started_at, time_scale) if t >= start else None,
        finishTime=_wall_iso(defn, end, started_at, time_scale) if status == "FINISHED" else None,
    )
    if status != "INIT":
        step["stepInfo"] = {
            "processedRecords": defn.capacity_rows * 103 * done // 10_000,
            "capacity": defn.capacity_rows,
            "srcRps": rps,
            "dstRps": rps,
            "srcRt": 2 if running else 0,
            "dstRt": 4 if running else 0,
            "srcIops": rps * ROW_BYTES,
            "dstIops": rps * ROW_BYTES,
        }
    _fail(defn, step, t=t, started_at=started_at, time_scale=time_scale)
    return step


def _hostile_steps(defn: ProjectDef, steps: list[dict[str, object]]) -> list[dict[str, object]]:
    """Act out the faults of DescribeProjectSteps: after the real steps, or inside them."""
    if defn.fault == "many_steps":
        first = len(steps) + 1
        steps += [
            {"order": first + i, "name": f"SIM_STEP_{i:05d}", "status": "INIT", "progress": 0}
            for i in range(MANY_STEPS)
        ]
    for step in steps:
        if defn.fault == "huge_number":
            step["progress"] = HUGE_NUMBER
        elif defn.fault == "surrogate_status":
            step["status"] = f"{step['status']}{SURROGATE}"
    if defn.fault == "deep_nesting" and steps:
        steps[0]["stepInfo"] = DEEP_MARK
    return steps


def _wall_iso(defn: ProjectDef, t: float, started_at: float, time_scale: float) -> str:
    return iso(started_at + (t - defn.offset_seconds) / time_scale)


def _step_info(
    defn: ProjectDef, snap: Snapshot, phase: int, t: float, start: float
) -> dict[str, object]:
    if phase == FULL:
        done = _percent(t, start, start + FULL_SECONDS)
        # capacity is OMS's row estimate, so processed/capacity may pass 1
        processed = defn.capacity_rows * 103 * done // 10_000
        running = 0 < done < 100 and snap.status == "RUNNING"
        rps = int(defn.capacity_rows * 1.03 / FULL_SECONDS) if running else 0
        return {
            "processedRecords": processed,
            "capacity": defn.capacity_rows,
            "srcRps": rps,
            "dstRps": int(rps * 0.98),
            "srcRt": 3 if running else 0,  # milliseconds per row
            "dstRt": 11 if running else 0,
            "srcIops": rps * ROW_BYTES,  # bytes per second, despite the name
            "dstIops": int(rps * 0.98) * ROW_BYTES,
        }
    if phase == INCR and isinstance(snap.checkpoint, int) and snap.checkpoint > 0:
        lag = int(lag_seconds(defn, t))
        sample = snap.checkpoint + (lag * 1000 if defn.fault == "millisecond_checkpoint" else lag)
        return {
            "incrTimestampCheckpoint": snap.checkpoint,
            "checkpointSampleTimestamp": sample,  # when OMS sampled it: about now
            "enableIncrStatistics": None,
        }
    if phase == SWITCH:
        return {"checkpointSampleTimestamp": None}
    return {}


def stable_hash(text: str) -> int:
    """Hash the same in every process (unlike hash()), so bulk projects are reproducible."""
    return zlib.crc32(text.encode())


_DAY: Final = 86_400.0
_STEADY: Final = 3 * _DAY  # lifecycle seconds of projects long in incremental sync
# np_demo_ready's head start: ready at lifecycle second 225, 180 s after the start.
READY_OFFSET_SECONDS: Final = 45.0
INCONSISTENT_ROWS: Final = 17


def demo_projects() -> list[ProjectDef]:
    """Return the demo: one project per situation a dashboard should show."""
    full_start = PRECHECK_SECONDS + STRUCT_SECONDS
    return [
        ProjectDef(
            "np_demo_migration",
            "orders mysql to ob (lifecycle)",
            "migration",
            importance="HIGH",
            reverse=True,
            labels=("demo", "orders"),
            full_verify=True,
            incr_verify=True,
        ),
        ProjectDef(
            "np_demo_sync",
            "events ob to kafka (steady sync)",
            "sync",
            offset_seconds=_STEADY,
            phase_shift=0.3,
            sink_type="KAFKA",
            labels=("demo",),
        ),
        ProjectDef(
            "np_demo_failed",
            "billing mysql to ob (failed in full)",
            "migration",
            importance="HIGH",
            status="FAILED",
            offset_seconds=full_start + 600.0,
            freeze_at_seconds=full_start + 0.42 * FULL_SECONDS,
            labels=("demo", "billing"),
        ),
        ProjectDef(
            "np_demo_suspended",
            "crm oracle to ob (suspended)",
            "migration",
            importance="LOW",
            status="SUSPEND",
            offset_seconds=_DAY,
            freeze_at_seconds=_DAY - 600.0,
            source_type="ORACLE",
            sink_type="OB_ORACLE",
        ),
        ProjectDef(
            "np_demo_finished",
            "archive mysql to ob (finished)",
            "migration",
            importance="IGNORE",
            incr=False,
            offset_seconds=_DAY,
            labels=("demo",),
        ),
        ProjectDef(
            "np_demo_sybase",
            "ledger sybase to ob (sync, no timestamp)",
            "sync",
            sybase=True,
            offset_seconds=_STEADY,
            source_type="SYBASE",
            sink_type="OB_ORACLE",
        ),
        ProjectDef(
            "np_demo_lag_spikes",
            "users mysql to ob (lag spikes)",
            "migration",
            importance="MEDIUM",
            spiky=True,
            offset_seconds=_STEADY,
            phase_shift=0.7,
            full_verify=True,
        ),
        # Cut-over: ready 3 minutes in (verified, lag 3 s), once the verifier and
        # incremental catch-up end at lifecycle second 225.
        ProjectDef(
            "np_demo_ready",
            "payments mysql to ob (ready for cut-over)",
            "migration",
            importance="HIGH",
            offset_seconds=READY_OFFSET_SECONDS,
            lag_seconds=3.0,
            labels=("demo", "payments"),
            full_verify=True,
        ),
        # Never ready: the verification found 17 rows that differ; lag 4 s.
        ProjectDef(
            "np_demo_inconsistent",
            "inventory mysql to ob (verification differs)",
            "migration",
            importance="MEDIUM",
            offset_seconds=_STEADY,
            lag_seconds=4.0,
            labels=("demo",),
            full_verify=True,
            verify_different_rows=INCONSISTENT_ROWS,
        ),
        # Ready while its lag is below 30 s: the wave (2 s to 90 s every 10 minutes) passes
        # 30 s at 114 s and falls below again at 486 s.
        ProjectDef(
            "np_demo_lag_wave",
            "sessions mysql to ob (lag above 30 s and back)",
            "migration",
            importance="LOW",
            offset_seconds=_STEADY,
            full_verify=True,
        ),
    ]


_IMPORTANCE: Final = ("HIGH", "MEDIUM", "LOW", "IGNORE")


def bulk_project(index: int) -> ProjectDef:
    """Generate bulk project number `index`: a stable, mixed population, mostly incremental."""
    pid = f"p_sim_{index:06d}"
    h = stable_hash(pid)
    kind: Kind = "sync" if index % 3 == 0 else "migration"
    defn = ProjectDef(
        pid,
        f"sim {kind} {index:06d}",
        kind,
        importance=_IMPORTANCE[h % 4],
        reverse=kind == "migration" and h % 4 == 0,
        offset_seconds=_STEADY + h % 10_000,
        spiky=index % 20 == 0,
        sybase=kind == "sync" and index % 97 == 0,
        phase_shift=(h % 1000) / 1000,
        capacity_rows=100_000 + h % 50_000_000,
        labels=(f"shard-{index % 8}",),
        full_verify=kind == "migration" and h % 3 == 0,
        incr_verify=h % 5 == 0,
        step_count=BULK_STEP_COUNT,
    )
    bucket = (h >> 8) % 20
    if bucket < 2:  # still moving through precheck, struct and full
        return replace(defn, offset_seconds=float(h % 170))
    if bucket == 2:
        at = PRECHECK_SECONDS + STRUCT_SECONDS + (h % 100) * FULL_SECONDS / 100
        return replace(defn, status="FAILED", freeze_at_seconds=at, offset_seconds=at + 900)
    if bucket == 3:
        return replace(defn, incr=False)  # done: finished after full transfer
    if bucket == 4:
        return replace(defn, status="SUSPEND", freeze_at_seconds=defn.offset_seconds - 300)
    return defn


def bulk_projects(count: int) -> list[ProjectDef]:
    """Return `count` generated projects with ids p_sim_000001, p_sim_000002, ..."""
    return [bulk_project(i) for i in range(1, count + 1)]
