"""OMS 4.x (4.1.1-CE and later): ``POST /api/v2?Action=...`` with a JSON body."""

from __future__ import annotations

import heapq
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from oms_exporter.model import (
    CONSISTENT_RESULTS,
    MAX_WORST_TABLES,
    STEP_STATUSES,
    UNKNOWN,
    VERIFY_RESULTS,
    VERIFY_ROW_KINDS,
    VERIFY_TABLE_STATUSES,
    Api,
    Checkpoint,
    FullTransfer,
    FullVerification,
    Kind,
    ListedProject,
    Pool,
    ProjectDetails,
    ProjectProgress,
    Step,
    VerifiedTable,
    checkpoint,
    clean_text,
    label_text,
    normalise_step,
    parse_number,
    parse_optional_bool,
    parse_rate,
    progress_ratio,
    shared_text,
)
from oms_exporter.oms.envelope import camel_keys, unwrap_envelope, unwrap_object
from oms_exporter.oms.errors import OmsInvalidAnswer
from oms_exporter.oms.normalise import FieldNames, build_progress
from oms_exporter.oms.transport import Transport

PATH: Final = "/api/v2"
PAGE_SIZE: Final = 150  # ListProjects' maximum
# A project's answer (a ListProjects page, DescribeProject) carries its whole table mapping:
# 150 projects of 500 tables are about 9 MB. Read up to this much (or the configured cap,
# if larger); parsing drops the mapping as it goes, so it is never held as objects. A page
# costs about three times its size while read and parsed: larger ones are asked smaller
# (see discovery), so this also bounds what a discovery adds to the RSS.
PROJECT_ANSWER_BYTES: Final = 8 * 1024 * 1024
LABELS_MAX_CHARS: Final = 128
# Every step becomes several series: 10,000 step names in one answer made 80,000.
MAX_STEPS: Final = 64
# An ID becomes a label on every series of its project; OMS's are about 16 characters.
MAX_ID_CHARS: Final = 256
# Steps whose stepInfo counts rows (ODC reads FULL_VERIFIER's like FULL_TRANSFER's).
_FULL_STEPS: Final = frozenset({"FULL_TRANSFER", "FULL_MIGRATION", "FULL_VERIFIER"})
# Steps whose stepInfo says when OMS last sampled a checkpoint, and of which direction.
# (TRANSFER_APP_SWITCH carries one too, of no documented direction; REVERSE_INCR_TRANSFER
# none, in ODC and the documents.)
_SAMPLE_STEPS: Final = {"INCR_TRANSFER": "forward"}
# One string object per known status, and steps equal across projects shared.
_STEP_STATUS: Final = {status: status for status in STEP_STATUSES}
_SHARED_STEPS: Final[Pool[Step]] = Pool(4096)

FIELDS: Final = FieldNames(
    enable_struct=("enableStructTransfer",),
    enable_full=("enableFullTransfer",),
    struct_progress=("structTransferProgress",),
    full_progress=("fullTransferProgress",),
    enable_reverse=("enableReverseIncrTransfer",),
    reverse_checkpoint=("reverseIncrTransferCheckpoint",),
    alarm_level=("alarmLevel", "importance"),
)


async def call(
    transport: Transport,
    action: str,
    body: dict[str, Any],
    *,
    max_response_bytes: int | None = None,
) -> bytes:
    """Call one read-only Action and return the raw answer body."""
    answer = await transport.request(
        "POST",
        f"{PATH}?Action={action}",
        body=orjson.dumps(body),
        max_response_bytes=max_response_bytes,
    )
    return answer.body


def project_answer_bytes(transport: Transport) -> int:
    """The cap on an answer describing whole projects: PROJECT_ANSWER_BYTES at least."""
    return max(transport.max_response_bytes, PROJECT_ANSWER_BYTES)


def parse_progress(
    project_id: str, body: bytes, *, details: ProjectDetails | None = None
) -> ProjectProgress:
    return build_progress(
        project_id=project_id,
        api=Api.V4,
        kind=details.kind if details else Kind.UNKNOWN,
        data=unwrap_object(body),
        fields=FIELDS,
        details=details,
    )


def project_details(item: dict[str, Any], *, listed: bool = True) -> ProjectDetails | None:
    """Read one project of ``ListProjects`` (``listed``) or ``DescribeProject``; None without an id.

    Only what the exporter shows is read: the connection infos (other systems' hosts,
    ports, user names) are never looked at (and were dropped by the slim parse).
    """
    data = camel_keys(item)
    project_id = _project_id(data.get("id") or data.get("projectId"))
    if project_id is None:
        return None
    labels = data.get("labels")
    names = sorted(
        label_text(camel_keys(label).get("name"))
        for label in (labels if isinstance(labels, list) else [])
        if isinstance(label, dict)
    )
    status = label_text(data.get("status")).upper()
    # The same few types, endpoints, labels and statuses across 10,000 projects: one each.
    return ProjectDetails(
        project_id=project_id,
        name=label_text(data.get("name"), 128),
        type=shared_text(label_text(data.get("type")).upper()),
        source_type=shared_text(label_text(data.get("sourceEndpointType")).upper()),
        sink_type=shared_text(label_text(data.get("sinkEndpointType")).upper()),
        labels=shared_text(",".join(name for name in names if name)[:LABELS_MAX_CHARS]),
        status=shared_text(status) or UNKNOWN,
        alarming=_alarming(data.get("alarmStats")) if listed else None,
        full_verify=parse_optional_bool(data.get("enableFullVerify")),
        incr_verify=parse_optional_bool(data.get("enableIncrVerify")),
    )


def _alarming(stats: object) -> bool | None:
    if not isinstance(stats, dict):
        return None
    return parse_optional_bool(camel_keys(stats).get("alarming"))


def _project_id(value: object) -> str | None:
    """A usable project ID (repaired to encode as UTF-8), or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = clean_text(str(value))  # str(int) is short: the decoder keeps at most 20 digits
    return sys.intern(text) if text and len(text) <= MAX_ID_CHARS else None


def parse_project(project_id: str, body: bytes) -> ProjectDetails:
    """``DescribeProject``, always under the ID asked for, whatever ID the answer names."""
    details = project_details(unwrap_object(body, slim=True), listed=False)
    if details is None:
        return ProjectDetails(project_id=project_id)
    return replace(details, project_id=project_id)


def parse_page(body: bytes) -> tuple[list[ListedProject], int]:
    """One ``ListProjects`` page: its projects, and how many items it held (usable or not).

    ``totalCount`` is not read: the English documents call it a number of pages, the
    Chinese ones and ODC a number of records. A page shorter than asked ends the listing.
    Each item's ``steps`` are read as DescribeProjectSteps' are: the poller uses them
    instead of asking for the steps of that project in the round of the listing.
    """
    data = unwrap_envelope(body, slim=True)["data"]
    if not isinstance(data, list):
        raise OmsInvalidAnswer("ListProjects data is not a list")
    projects: list[ListedProject] = []
    for item in data:
        if not isinstance(item, dict) or (details := project_details(item)) is None:
            continue
        listed = camel_keys(item).get("steps")
        steps, dropped = parse_step_items(listed) if isinstance(listed, list) else (None, 0)
        projects.append(ListedProject(details, steps, dropped))
    return projects, len(data)


def _full_transfer(info: dict[str, Any]) -> FullTransfer:
    """Rows, rates, bytes (``*Iops`` are bytes per second) and ms-per-row latencies."""
    return FullTransfer(
        processed_rows=parse_number(info.get("processedRecords")),
        estimated_rows=parse_number(info.get("capacity")),
        source_rows_per_second=parse_number(info.get("srcRps")),
        sink_rows_per_second=parse_number(info.get("dstRps")),
        source_bytes_per_second=parse_rate(info.get("srcIops")),
        sink_bytes_per_second=parse_rate(info.get("dstIops")),
        source_row_latency_seconds=parse_rate(info.get("srcRt"), scale=0.001),
        sink_row_latency_seconds=parse_rate(info.get("dstRt"), scale=0.001),
    )


def _checkpoint_sample(name: str, info: dict[str, Any]) -> Checkpoint | None:
    direction = _SAMPLE_STEPS.get(name)
    if direction is None:
        return None
    return checkpoint(direction, info.get("checkpointSampleTimestamp"))


def parse_steps(body: bytes) -> tuple[Step, ...]:
    """``DescribeProjectSteps``: one Step per distinct step name, in OMS's order."""
    return parse_steps_counted(body)[0]


def parse_steps_counted(body: bytes) -> tuple[tuple[Step, ...], int]:
    """The first MAX_STEPS distinct steps, and how many more distinct names were dropped."""
    data = unwrap_envelope(body)["data"]
    if not isinstance(data, list):
        raise OmsInvalidAnswer("DescribeProjectSteps data is not a list")
    return parse_step_items(data)


def parse_step_items(data: list[Any]) -> tuple[tuple[Step, ...], int]:
    """Steps from a list of step objects (DescribeProjectSteps' data, a listed ``steps``)."""
    steps: dict[str, Step] = {}
    dropped: set[str] = set()
    for item in data:
        if not isinstance(item, dict):
            continue
        item = camel_keys(item)
        step = _read_step(item)
        if step is None or step.name in steps:
            continue
        if len(steps) >= MAX_STEPS:
            dropped.add(step.name)
            continue
        steps[step.name] = step
    return tuple(steps.values()), len(dropped)


# A step without stepInfo is its name, status and progress alone: the same few across
# projects (a FINISHED TRANSFER_PRECHECK at 100), so read once. The progress's type is
# in the key: True and 1 are equal keys but not the same progress.
_PlainKey = tuple[object, object, object, type]
_PLAIN_STEPS: Final[dict[_PlainKey, Step | None]] = {}
_PLAIN_STEPS_CAP: Final = 4096


def _read_step(item: dict[str, Any]) -> Step | None:
    """One step object as a Step (None without a name); one without stepInfo read once."""
    if item.get("stepInfo"):
        return _step(item)
    progress = item.get("progress")
    key = (item.get("name"), item.get("status"), progress, type(progress))
    try:
        if key in _PLAIN_STEPS:
            return _PLAIN_STEPS[key]
    except TypeError:  # an object or a list where OMS sends a scalar: read it as it is
        return _step(item)
    step = _step(item)
    if len(_PLAIN_STEPS) >= _PLAIN_STEPS_CAP:  # a hostile OMS varies them endlessly
        _PLAIN_STEPS.clear()
    _PLAIN_STEPS[key] = step
    return step


def _step(item: dict[str, Any]) -> Step | None:
    """One step object as a Step; None when it has no name."""
    name = normalise_step(item.get("name"))
    if name is None:
        return None
    status = label_text(item.get("status")).upper()
    info = item.get("stepInfo")
    info = camel_keys(info) if isinstance(info, dict) else {}
    return _SHARED_STEPS(
        Step(
            name=name,
            status=_STEP_STATUS.get(status, UNKNOWN),
            progress_ratio=progress_ratio(item.get("progress")),
            full_transfer=_full_transfer(info) if info and name in _FULL_STEPS else None,
            checkpoint_sample=_checkpoint_sample(name, info) if info else None,
        )
    )


# --- full verification (ListProjectFullVerifyResult) -----------------------------------------
VERIFY_ACTION: Final = "ListProjectFullVerifyResult"
VERIFY_PAGE_SIZE: Final = 150  # the documented maximum (ODC, Alibaba Cloud's SDK)
# A runaway pager stops here: 100 pages of 150 tables. differentNumber is OMS's total, so a
# project with more tables still counts every different row; only its table counts stop.
MAX_VERIFY_PAGES: Final = 100
_NAME_CHARS: Final = 128  # Oracle allows 128-character identifiers
_ROW_FIELDS: Final = (
    ("consistent", "consistentCount"),
    ("mismatched", "mismatchedCount"),
    ("source_only", "sourceOnlyCount"),
    ("dest_only", "destOnlyCount"),
)

TableKey = tuple[str, str, str]


def verification_body(project_id: str, page_number: int) -> dict[str, Any]:
    """One page of every table: no schema or status filter (OMS requires only projectId)."""
    return {"projectId": project_id, "pageNumber": page_number, "pageSize": VERIFY_PAGE_SIZE}


def _verify_progress(value: object) -> float | None:
    """A table's progress, a string: ``"80"`` (percent, Alibaba Cloud's docs) or ``"1.0"``
    (a fraction, ODC's fixture of a finished table); ``"42%"`` accepted too."""
    percent = False
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        value = text.removesuffix("%").strip()
    number = parse_number(value)
    if number is None or number < 0:
        return None
    fraction = (
        not percent
        and number <= 1.0
        and (isinstance(value, float) or (isinstance(value, str) and "." in value))
    )
    return min(number if fraction else number / 100.0, 1.0)


def verified_table(item: dict[str, Any]) -> VerifiedTable:
    """One entry of ``fullVerifyTableStatistics``, names repaired, results from closed sets."""
    data = camel_keys(item)
    result = label_text(data.get("resultType")).upper()
    status = label_text(data.get("status")).upper()
    counts = {kind: parse_rate(data.get(key)) for kind, key in _ROW_FIELDS}
    return VerifiedTable(
        source_schema=label_text(data.get("sourceSchemaName"), _NAME_CHARS),
        source_table=label_text(data.get("sourceTableName"), _NAME_CHARS),
        dest_schema=label_text(data.get("destSchemaName"), _NAME_CHARS),
        result=result if result in VERIFY_RESULTS else UNKNOWN,
        status=status if status in VERIFY_TABLE_STATUSES else UNKNOWN,
        progress_ratio=_verify_progress(data.get("progress")),
        consistent_rows=counts["consistent"],
        mismatched_rows=counts["mismatched"],
        source_only_rows=counts["source_only"],
        dest_only_rows=counts["dest_only"],
    )


def parse_verification_page(body: bytes) -> tuple[float | None, list[VerifiedTable], int]:
    """One page: ``differentNumber``, its tables, and how many entries it held.

    ``data: null`` and a missing table list are no result yet (an empty page).
    """
    data = unwrap_envelope(body)["data"]
    if data is None:
        return None, [], 0
    if not isinstance(data, dict):
        raise OmsInvalidAnswer(f"{VERIFY_ACTION} data is {type(data).__name__}, not an object")
    data = camel_keys(data)
    items = data.get("fullVerifyTableStatistics")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise OmsInvalidAnswer(f"{VERIFY_ACTION} fullVerifyTableStatistics is not a list")
    tables = [verified_table(item) for item in items if isinstance(item, dict)]
    return parse_rate(data.get("differentNumber")), tables, len(items)


def _worst_first(table: VerifiedTable) -> tuple[int, float, str, str, str]:
    """Tables that block a cut-over first, then those with different rows, then running."""
    blocking = table.result not in CONSISTENT_RESULTS and table.result != "RUNNING"
    rank = 0 if blocking else 1 if table.different_rows > 0 else 2
    return rank, -table.different_rows, table.source_schema, table.source_table, table.dest_schema


def _worth_showing(table: VerifiedTable) -> bool:
    return table.result not in CONSISTENT_RESULTS or table.different_rows > 0


@dataclass(slots=True)
class VerificationTally:
    """Fold a verification's pages into totals as they arrive: no page is kept whole."""

    different_rows: float | None = None
    rows: dict[str, float] = field(default_factory=lambda: dict.fromkeys(VERIFY_ROW_KINDS, 0.0))
    tables_by_result: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(VERIFY_RESULTS, 0)
    )
    seen: set[TableKey] = field(default_factory=set)
    worst: list[VerifiedTable] = field(default_factory=list)

    def add(self, different_rows: float | None, tables: list[VerifiedTable]) -> int:
        """Count a page's tables not seen before; return how many were new."""
        if self.different_rows is None:
            self.different_rows = different_rows
        new = 0
        for table in tables:
            key = (table.source_schema, table.source_table, table.dest_schema)
            if key in self.seen:
                continue
            self.seen.add(key)
            new += 1
            self.tables_by_result[table.result] += 1
            for kind, value in zip(
                VERIFY_ROW_KINDS,
                (
                    table.consistent_rows,
                    table.mismatched_rows,
                    table.source_only_rows,
                    table.dest_only_rows,
                ),
                strict=True,
            ):
                self.rows[kind] += value or 0.0
            if _worth_showing(table):
                self.worst.append(table)
        if len(self.worst) > MAX_WORST_TABLES:
            self.worst = heapq.nsmallest(MAX_WORST_TABLES, self.worst, key=_worst_first)
        return new

    def result(self) -> FullVerification:
        return FullVerification(
            different_rows=self.different_rows,
            rows=dict(self.rows),
            tables_by_result=dict(self.tables_by_result),
            table_count=len(self.seen),
            worst_tables=tuple(sorted(self.worst, key=_worst_first)[:MAX_WORST_TABLES]),
        )


async def fetch_verification(transport: Transport, project_id: str) -> FullVerification:
    """Page through a project's verified tables until a short (or repeated) page, bounded."""
    tally = VerificationTally()
    for page_number in range(1, MAX_VERIFY_PAGES + 1):
        body = await call(transport, VERIFY_ACTION, verification_body(project_id, page_number))
        different_rows, tables, items = parse_verification_page(body)
        new = tally.add(different_rows, tables)
        if items < VERIFY_PAGE_SIZE or not new:  # the last page, or pageNumber is ignored
            break
    return tally.result()
