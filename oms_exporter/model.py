"""The one shape every OMS API answer becomes: a frozen snapshot of a project's progress.

Everything past this module sees plain, validated values: ratios in 0..1, checkpoints
as unix seconds or None, statuses from a closed set plus UNKNOWN.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, TypeVar


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
# Statuses that no longer change by themselves: incremental sync, if any, has stopped.
SETTLED_STATUSES: Final = frozenset({"FINISHED", "RELEASED", "DELETED"})
ALARM_LEVELS: Final = ("HIGH", "MEDIUM", "LOW", "IGNORE")
# full_verify and incr_verify come from the project (ListProjects, DescribeProject), the
# others from the progress answer.
FEATURES: Final = ("struct", "full", "incr", "reverse_incr", "full_verify", "incr_verify")
_FEATURE_KEYS: Final = frozenset(FEATURES)

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
    # OMS's own alarm state (ListProjects' alarmStats.alarming); None when discovery did
    # not supply it (DescribeProject is asked once, so its value would go stale).
    alarming: bool | None = None
    full_verify: bool | None = None  # enableFullVerify; None when OMS did not say
    incr_verify: bool | None = None  # enableIncrVerify; None when OMS did not say

    @property
    def kind(self) -> Kind:
        return {"MIGRATION": Kind.MIGRATION, "SYNC": Kind.SYNC}.get(self.type, Kind.UNKNOWN)


@dataclass(frozen=True, slots=True)
class FullTransfer:
    """Row counts and rates of a full transfer or full verification step (its ``stepInfo``).

    OMS names byte rates ``srcIops``/``dstIops`` and sends per-row latencies
    (``srcRt``/``dstRt``) in milliseconds; here they are bytes and seconds.
    """

    processed_rows: float | None
    estimated_rows: float | None
    source_rows_per_second: float | None
    sink_rows_per_second: float | None
    source_bytes_per_second: float | None = None
    sink_bytes_per_second: float | None = None
    source_row_latency_seconds: float | None = None
    sink_row_latency_seconds: float | None = None

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
    full_transfer: FullTransfer | None = None  # FULL_TRANSFER and FULL_VERIFIER
    # When OMS last sampled the checkpoint (``checkpointSampleTimestamp``, INCR_TRANSFER:
    # direction "forward"), read like a checkpoint: unix seconds, milliseconds converted.
    checkpoint_sample: Checkpoint | None = None


@dataclass(frozen=True, slots=True)
class ListedProject:
    """One project of a ListProjects page: its details and, where the item had them, steps."""

    details: ProjectDetails
    steps: tuple[Step, ...] | None = None
    dropped_steps: int = 0  # distinct step names beyond MAX_STEPS, not kept


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
    verification: FullVerification | None = None  # 4.x, while FULL_VERIFIER runs and after

    def __post_init__(self) -> None:
        """Give every feature of FEATURES a value: one a caller did not name is off."""
        if not self.features.keys() >= _FEATURE_KEYS:  # one C-level check per answer
            complete = dict.fromkeys(FEATURES, False) | self.features
            object.__setattr__(self, "features", complete)

    def completed(
        self, steps: tuple[Step, ...] | None, verification: FullVerification | None
    ) -> ProjectProgress:
        """This answer with the step details and verification result asked beside it.

        One construction, where dataclasses.replace (twice) cost more than the parse of a
        steady answer's fields.
        """
        if steps is None and verification is None:
            return self
        return ProjectProgress(
            project_id=self.project_id,
            api=self.api,
            kind=self.kind,
            status=self.status,
            raw_status=self.raw_status,
            alarm_level=self.alarm_level,
            current_step=self.current_step,
            features=self.features,
            struct_progress_ratio=self.struct_progress_ratio,
            full_progress_ratio=self.full_progress_ratio,
            checkpoints=self.checkpoints,
            details=self.details,
            steps=steps,
            verification=verification,
        )

    @property
    def name(self) -> str | None:
        return self.details.name if self.details and self.details.name else None

    @property
    def checkpoint_samples(self) -> tuple[Checkpoint, ...]:
        """When OMS last sampled each direction's checkpoint, from the step details."""
        if self.steps is None:
            return ()
        return tuple(step.checkpoint_sample for step in self.steps if step.checkpoint_sample)


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


T = TypeVar("T")


class Pool(Generic[T]):
    """Equal values kept as one object, up to a cap (a hostile OMS cannot grow it past).

    10,000 projects with 10 steps each hold 100,000 steps, most of them equal across
    projects (a FINISHED TRANSFER_PRECHECK at 100 %): shared, they cost memory once.
    """

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._kept: dict[T, T] = {}

    def __call__(self, value: T) -> T:
        kept = self._kept.get(value)
        if kept is not None:
            return kept
        if len(self._kept) < self._cap:
            self._kept[value] = value
        return value


_TEXTS: Final[Pool[str]] = Pool(4096)  # step names and statuses, project types, labels


def shared_text(text: str) -> str:
    """One object for each of the short texts many projects repeat (bounded pool)."""
    return _TEXTS(text)


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
    return _TEXTS(text) if _STEP_PATTERN.fullmatch(text) else UNKNOWN


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


def parse_optional_bool(value: object) -> bool | None:
    """A yes or no OMS stated (true/false, 1/0, their strings); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
    return None


_ZERO: Final = 0.0


def parse_number(value: object) -> float | None:
    """Read an int, float or numeric string; anything else, or out of range, is unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if value == 0:
            return _ZERO  # rates and rows: many are 0, and each float is a 24-byte object
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
    if number == 0.0 and math.copysign(1.0, number) > 0:
        return _ZERO
    return number if math.isfinite(number) and abs(number) <= NUMBER_LIMIT else None


def parse_rate(value: object, *, scale: float = 1.0) -> float | None:
    """A non-negative amount (rows, bytes, milliseconds), times ``scale``; else unknown."""
    number = parse_number(value)
    if number is None or number < 0:
        return None
    return number if scale == 1.0 or number == 0.0 else number * scale


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
    ratio = number / 100.0
    # The constants when clamped or at 100 %: most steps, one float object between them.
    return 1.0 if ratio >= 1.0 else 0.0 if ratio <= 0.0 else ratio


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


# Full verification (ListProjectFullVerifyResult): the closed sets behind its labels.
VERIFY_RESULTS: Final = (
    "CONSISTENT",
    "INCONSISTENT",
    "SCHEMA_MISMATCH",
    "INDEX_CONFLICT",
    "TARGET_TABLE_NOT_EXIST",
    "RUNTIME_EXCEPTION",
    "BOTH_EMPTY",
    "SOURCE_EMPTY",
    "TARGET_EMPTY",
    "MISMATCH_LIMIT",
    "MISMATCH_LIMIT_NO_PK",
    "NOT_CATEGORIZED",
    "RUNNING",
    UNKNOWN,
)
# Results that let a migration cut over; RUNNING is the verification still going.
CONSISTENT_RESULTS: Final = frozenset({"CONSISTENT", "BOTH_EMPTY"})
VERIFY_ROW_KINDS: Final = ("consistent", "mismatched", "source_only", "dest_only")
VERIFY_TABLE_STATUSES: Final = ("RUNNING", "ERROR", "FINISHED", "SUSPEND", UNKNOWN)
MAX_WORST_TABLES: Final = 20


@dataclass(frozen=True, slots=True)
class VerifiedTable:
    """One table of a full verification, as the status page and `cutover` show it."""

    source_schema: str
    source_table: str
    dest_schema: str
    result: str  # one of VERIFY_RESULTS
    status: str  # one of VERIFY_TABLE_STATUSES
    progress_ratio: float | None
    consistent_rows: float | None = None
    mismatched_rows: float | None = None
    source_only_rows: float | None = None
    dest_only_rows: float | None = None

    @property
    def different_rows(self) -> float:
        return sum(
            value or 0.0
            for value in (self.mismatched_rows, self.source_only_rows, self.dest_only_rows)
        )


@dataclass(frozen=True, slots=True)
class FullVerification:
    """A project's full verification result: totals, tables by result, the worst tables.

    Per-table series would be unbounded, so only totals become metrics; the worst tables
    (at most MAX_WORST_TABLES, inconsistent first) are kept for people to read.
    """

    different_rows: float | None  # differentNumber
    rows: dict[str, float]  # VERIFY_ROW_KINDS -> summed over tables
    tables_by_result: dict[str, int]  # every one of VERIFY_RESULTS, 0 when none
    table_count: int
    worst_tables: tuple[VerifiedTable, ...] = ()

    @property
    def inconsistent_tables(self) -> int:
        """Tables whose result blocks a cut-over (neither consistent nor still running)."""
        return sum(
            count
            for result, count in self.tables_by_result.items()
            if result not in CONSISTENT_RESULTS and result != "RUNNING"
        )
