"""Map one flavour's ``data`` object onto the model, driven by that flavour's field names."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from oms_exporter.model import (
    FEATURES,
    Api,
    Checkpoint,
    Kind,
    ProjectDetails,
    ProjectProgress,
    checkpoint,
    normalise_alarm_level,
    normalise_status,
    normalise_step,
    parse_bool,
    progress_ratio,
    scalar_text,
)


@dataclass(frozen=True, slots=True)
class FieldNames:
    """Where a flavour keeps each value; tuples list accepted alternatives, first wins."""

    enable_struct: tuple[str, ...]
    enable_full: tuple[str, ...]
    struct_progress: tuple[str, ...]
    full_progress: tuple[str, ...]
    enable_reverse: tuple[str, ...]
    reverse_checkpoint: tuple[str, ...]
    alarm_level: tuple[str, ...]
    enable_incr: tuple[str, ...] = ("enableIncrSync",)
    incr_checkpoint: tuple[str, ...] = ("incrSyncCheckpoint",)


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


@functools.cache
def _features(*enabled: bool) -> dict[str, bool]:
    """One dict per combination (64 at most), shared by every project: never mutated."""
    return dict(zip(FEATURES, enabled, strict=True))


def build_progress(
    *,
    project_id: str,
    api: Api,
    kind: Kind,
    data: dict[str, Any],
    fields: FieldNames,
    details: ProjectDetails | None = None,
) -> ProjectProgress:
    """Normalise a ``data`` object whose keys are already camelCase."""
    features = _features(
        parse_bool(_first(data, fields.enable_struct)),
        parse_bool(_first(data, fields.enable_full)),
        parse_bool(_first(data, fields.enable_incr)),
        parse_bool(_first(data, fields.enable_reverse)),
        # Not in any progress answer: ListProjects and DescribeProject carry them.
        bool(details and details.full_verify),
        bool(details and details.incr_verify),
    )
    checkpoints: list[Checkpoint] = []
    if features["incr"]:
        checkpoints.append(checkpoint("forward", _first(data, fields.incr_checkpoint)))
    if features["reverse_incr"] and fields.reverse_checkpoint:
        checkpoints.append(checkpoint("reverse", _first(data, fields.reverse_checkpoint)))
    raw_status = data.get("status")
    return ProjectProgress(
        project_id=project_id,
        api=api,
        kind=kind,
        status=normalise_status(raw_status),
        raw_status=scalar_text(raw_status),
        alarm_level=normalise_alarm_level(_first(data, fields.alarm_level)),
        current_step=normalise_step(data.get("currentStep")),
        features=features,
        struct_progress_ratio=progress_ratio(_first(data, fields.struct_progress)),
        full_progress_ratio=progress_ratio(_first(data, fields.full_progress)),
        checkpoints=tuple(checkpoints),
        details=details,
    )
