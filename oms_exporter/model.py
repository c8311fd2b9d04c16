"""The one shape every OMS API answer becomes: a frozen snapshot of a project's progress.

Everything past this module sees plain, validated values: ratios in 0..1, checkpoints
as unix seconds or None, statuses from a closed set plus UNKNOWN.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Api(StrEnum):
    """The OMS API flavour that answered for a project."""

    V4 = "v4"
    V3_MIGRATION = "v3-migration"
    V3_SYNC = "v3-sync"


class Kind(StrEnum):
    MIGRATION = "migration"
    SYNC = "sync"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    """Why a poll failed: the closed set behind every `reason` label."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP = "http"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    API_ERROR = "api_error"
    DECODE = "decode"
    INVALID = "invalid"


KNOWN_STATUSES: Final = (
    "INIT",
    "RUNNING",
    "SUSPEND",
    "FAILED",
    "FINISHED",
    "RELEASING",
    "RELEASED",
    "DELETED",
    "RUNNING_MODIFYING",
    "RUNNING_MERGING",
    "RUNNING_ALARMING",
)
UNKNOWN: Final = "UNKNOWN"
ALL_STATUSES: Final = (*KNOWN_STATUSES, UNKNOWN)
ALARM_LEVELS: Final = ("HIGH", "MEDIUM", "LOW", "IGNORE")
FEATURES: Final = ("struct", "full", "incr", "reverse_incr")

_STEP_PATTERN: Final = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An incremental sync position: unix seconds when OMS gave a timestamp."""

    direction: str
    seconds: float | None
    raw: str


STEP_STATUSES: Final = ("INIT", "RUNNING", "FAILED", "FINISHED", "SUSPEND", "MONITORING", UNKNOWN)


@dataclass(frozen=True, slots=True)
class ProjectDetails:
    """What OMS 4.x says about a project beyond its progress (ListProjects, DescribeProject)."""

    project_id: str
    name: str = ""
    type: str = ""  # MIGRATION or SYNC as OMS spells it, "" when unknown
    source_type: str = ""
    sink_type: str = ""
    labels: str = ""  # label names, sorted and joined with ",", bounded in length
    status: str = UNKNOWN

    @property
    def kind(self) -> Kind:
        return {"MIGRATION": Kind.MIGRATION, "SYNC": Kind.SYNC}.get(self.type, Kind.UNKNOWN)


@dataclass(frozen=True, slots=True)
class FullTransfer:
    """Row counts and rates of a full transfer step (its ``stepInfo``)."""

    processed_rows: float | None
    estimated_rows: float | None
    source_rows_per_second: float | None
    sink_rows_per_second: float | None

    @property
    def eta_seconds(self) -> float | None:
        """Rows left at the sink's current rate; None when it cannot be estimated."""
        done, total, rate = self.processed_rows, self.estimated_rows, self.sink_rows_per_second
        if done is None or total is None or not rate or rate <= 0:
            return None
        return max(0.0, total - done) / rate


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    status: str
    progress_ratio: float | None
    full_transfer: FullTransfer | None = None


@dataclass(frozen=True, slots=True)
class ProjectProgress:
    """What one successful poll learned about one project."""

    project_id: str
    api: Api
    kind: Kind
    status: str
    raw_status: str
    alarm_level: str
    current_step: str | None
    features: dict[str, bool]
    struct_progress_ratio: float | None
    full_progress_ratio: float | None
    checkpoints: tuple[Checkpoint, ...]
    details: ProjectDetails | None = None
    steps: tuple[Step, ...] | None = None

    @property
    def name(self) -> str | None:
        return self.details.name if self.details and self.details.name else None


def normalise_status(value: object) -> str:
    text = str(value).strip().upper() if isinstance(value, str) else ""
    return text if text in KNOWN_STATUSES else UNKNOWN


def normalise_alarm_level(value: object) -> str:
    text = value.strip().upper() if isinstance(value, str) else ""
    return text if text in ALARM_LEVELS else UNKNOWN


def normalise_step(value: object) -> str | None:
    """Keep a step name usable as a label value; odd ones become UNKNOWN."""
    if value is None or value == "":
        return None
    text = value.strip().upper() if isinstance(value, str) else ""
    return text if _STEP_PATTERN.match(text) else UNKNOWN


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


def parse_number(value: object) -> float | None:
    """Read an int, float or numeric string; anything else is unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def progress_ratio(value: object) -> float | None:
    """Turn an OMS percentage into 0..1, clamping the overshoot OMS's row estimates cause."""
    number = parse_number(value)
    if number is None:
        return None
    return min(max(number / 100.0, 0.0), 1.0)


def label_text(value: object, limit: int = 64) -> str:
    """A short single-line label value from whatever OMS sent."""
    return " ".join(value.split())[:limit] if isinstance(value, str) else ""


def checkpoint(direction: str, value: object) -> Checkpoint:
    seconds = parse_number(value)
    if seconds is not None and seconds <= 0:
        # OMS reports 0 until incremental sync has started: no position yet, not 1970.
        seconds = None
    raw = "" if value is None else str(value)[:64]
    return Checkpoint(direction=direction, seconds=seconds, raw=raw)
