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

_STEP_PATTERN: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Lone surrogates: valid as JSON escapes, not encodable as UTF-8 (labels, logs, HTML).
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
REPLACEMENT: Final = "\ufffd"
# OMS is Java: every genuine number fits a long; anything larger is garbage, not data.
NUMBER_LIMIT: Final = 2.0**63
# Unix seconds reach 10^11 in the year 5138, milliseconds passed it in 1973.
MILLISECONDS_ABOVE: Final = 1e11


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An incremental sync position: unix seconds when OMS gave a timestamp."""

    direction: str
    seconds: float | None
    raw: str
    from_milliseconds: bool = False  # OMS sent milliseconds; ``seconds`` is converted


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


def clean_text(text: str) -> str:
    """Replace lone surrogates with U+FFFD, so the text encodes as UTF-8 everywhere."""
    if text.isascii():  # the usual case, checked at C speed
        return text
    return _SURROGATES.sub(REPLACEMENT, text)


def scalar_text(value: object, limit: int = 64) -> str:
    """A string or number as clean text, anything else (lists, objects, null) as ""."""
    if isinstance(value, str):
        return clean_text(value[:limit])
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):  # str() of a 5,000-digit int raises, of a long is cheap
        return str(value)[:limit] if -NUMBER_LIMIT <= value <= NUMBER_LIMIT else ""
    if isinstance(value, float):
        return str(value)[:limit] if math.isfinite(value) else ""
    return ""


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
    return text if _STEP_PATTERN.fullmatch(text) else UNKNOWN


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


def parse_number(value: object) -> float | None:
    """Read an int, float or numeric string; anything else, or out of range, is unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        # Checked before float(): an int of 400 digits overflows it.
        return float(value) if -NUMBER_LIMIT <= value <= NUMBER_LIMIT else None
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and len(value) <= 64:  # float() of a megabyte costs
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and abs(number) <= NUMBER_LIMIT else None


def parse_count(value: object) -> int | None:
    """A non-negative whole count (``totalCount``), or unknown."""
    number = parse_number(value)
    if number is None or number < 0 or not number.is_integer():
        return None
    return int(number)


def progress_ratio(value: object) -> float | None:
    """Turn an OMS percentage into 0..1, clamping the overshoot OMS's row estimates cause."""
    number = parse_number(value)
    if number is None:
        return None
    return min(max(number / 100.0, 0.0), 1.0)


def label_text(value: object, limit: int = 64) -> str:
    """A short single-line label value from whatever OMS sent, encodable as UTF-8."""
    if not isinstance(value, str):
        return ""
    # Split only a bounded head: a megabyte of name costs nothing beyond this slice.
    return clean_text(" ".join(value[: limit * 4].split())[:limit])


def checkpoint(direction: str, value: object) -> Checkpoint:
    """Read a checkpoint as unix seconds, converting milliseconds (OMS docs say seconds)."""
    seconds = parse_number(value)
    from_milliseconds = False
    if seconds is not None and seconds > MILLISECONDS_ABOVE:
        seconds /= 1000.0
        from_milliseconds = seconds <= MILLISECONDS_ABOVE
        if not from_milliseconds:
            seconds = None  # microseconds or nonsense: no usable position
    if seconds is not None and seconds <= 0:
        # OMS reports 0 until incremental sync has started: no position yet, not 1970.
        seconds = None
    return Checkpoint(
        direction=direction,
        seconds=seconds,
        raw=scalar_text(value),
        from_milliseconds=from_milliseconds,
    )
