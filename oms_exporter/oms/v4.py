"""OMS 4.x (4.1.1-CE and later): ``POST /api/v2?Action=...`` with a JSON body."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from oms_exporter.model import (
    STEP_STATUSES,
    UNKNOWN,
    Api,
    FullTransfer,
    Kind,
    ProjectDetails,
    ProjectProgress,
    Step,
    clean_text,
    label_text,
    normalise_step,
    parse_count,
    parse_number,
    progress_ratio,
)
from oms_exporter.oms.envelope import camel_keys, unwrap_envelope, unwrap_object
from oms_exporter.oms.errors import OmsInvalidAnswer
from oms_exporter.oms.normalise import FieldNames, build_progress
from oms_exporter.oms.transport import Transport

PATH: Final = "/api/v2"
PAGE_SIZE: Final = 150  # ListProjects' maximum
LABELS_MAX_CHARS: Final = 128
# Every step becomes several series: 10,000 step names in one answer made 80,000.
MAX_STEPS: Final = 64
# An ID becomes a label on every series of its project; OMS's are about 16 characters.
MAX_ID_CHARS: Final = 256
_FULL_STEPS: Final = frozenset({"FULL_TRANSFER", "FULL_MIGRATION"})

FIELDS: Final = FieldNames(
    enable_struct=("enableStructTransfer",),
    enable_full=("enableFullTransfer",),
    struct_progress=("structTransferProgress",),
    full_progress=("fullTransferProgress",),
    enable_reverse=("enableReverseIncrTransfer",),
    reverse_checkpoint=("reverseIncrTransferCheckpoint",),
    alarm_level=("alarmLevel", "importance"),
)


async def call(transport: Transport, action: str, body: dict[str, Any]) -> bytes:
    """Call one read-only Action and return the raw answer body."""
    answer = await transport.request("POST", f"{PATH}?Action={action}", json_body=body)
    return answer.body


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


def project_details(item: dict[str, Any]) -> ProjectDetails | None:
    """Read one project of ``DescribeProject`` or ``ListProjects``; None without an id."""
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
    return ProjectDetails(
        project_id=project_id,
        name=label_text(data.get("name"), 128),
        type=label_text(data.get("type")).upper(),
        source_type=label_text(data.get("sourceEndpointType")).upper(),
        sink_type=label_text(data.get("sinkEndpointType")).upper(),
        labels=",".join(name for name in names if name)[:LABELS_MAX_CHARS],
        status=status or UNKNOWN,
    )


def _project_id(value: object) -> str | None:
    """A usable project ID (repaired to encode as UTF-8), or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = clean_text(str(value))  # str(int) is short: the decoder keeps at most 20 digits
    return text if text and len(text) <= MAX_ID_CHARS else None


def parse_project(project_id: str, body: bytes) -> ProjectDetails:
    """``DescribeProject``, always under the ID asked for, whatever ID the answer names."""
    details = project_details(unwrap_object(body))
    if details is None:
        return ProjectDetails(project_id=project_id)
    return replace(details, project_id=project_id)


def parse_page(body: bytes) -> tuple[list[ProjectDetails], int | None]:
    """One ``ListProjects`` page and the total record count it announces."""
    envelope = unwrap_envelope(body)
    data = envelope["data"]
    if not isinstance(data, list):
        raise OmsInvalidAnswer("ListProjects data is not a list")
    projects = [
        details
        for item in data
        if isinstance(item, dict) and (details := project_details(item)) is not None
    ]
    return projects, parse_count(envelope.get("totalCount"))


def _full_transfer(info: object) -> FullTransfer | None:
    if not isinstance(info, dict):
        return None
    info = camel_keys(info)
    return FullTransfer(
        processed_rows=parse_number(info.get("processedRecords")),
        estimated_rows=parse_number(info.get("capacity")),
        source_rows_per_second=parse_number(info.get("srcRps")),
        sink_rows_per_second=parse_number(info.get("dstRps")),
    )


def parse_steps(body: bytes) -> tuple[Step, ...]:
    """``DescribeProjectSteps``: one Step per distinct step name, in OMS's order."""
    return parse_steps_counted(body)[0]


def parse_steps_counted(body: bytes) -> tuple[tuple[Step, ...], int]:
    """The first MAX_STEPS distinct steps, and how many more distinct names were dropped."""
    data = unwrap_envelope(body)["data"]
    if not isinstance(data, list):
        raise OmsInvalidAnswer("DescribeProjectSteps data is not a list")
    steps: dict[str, Step] = {}
    dropped: set[str] = set()
    for item in data:
        if not isinstance(item, dict):
            continue
        item = camel_keys(item)
        name = normalise_step(item.get("name"))
        if name is None or name in steps:
            continue
        if len(steps) >= MAX_STEPS:
            dropped.add(name)
            continue
        status = label_text(item.get("status")).upper()
        steps[name] = Step(
            name=name,
            status=status if status in STEP_STATUSES else UNKNOWN,
            progress_ratio=progress_ratio(item.get("progress")),
            full_transfer=_full_transfer(item.get("stepInfo")) if name in _FULL_STEPS else None,
        )
    return tuple(steps.values()), len(dropped)
