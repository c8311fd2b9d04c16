"""OMS 4.x (4.1.1-CE and later): ``POST /api/v2?Action=...`` with a JSON body."""

from __future__ import annotations

from typing import Any, Final

from oms_exporter.model import Api, Kind, ProjectProgress
from oms_exporter.oms.envelope import unwrap_object
from oms_exporter.oms.normalise import FieldNames, build_progress
from oms_exporter.oms.transport import Transport

PATH: Final = "/api/v2"

FIELDS: Final = FieldNames(
    enable_struct=("enableStructTransfer",),
    enable_full=("enableFullTransfer",),
    struct_progress=("structTransferProgress",),
    full_progress=("fullTransferProgress",),
    enable_reverse=("enableReverseIncrTransfer",),
    reverse_checkpoint=("reverseIncrTransferCheckpoint",),
    alarm_level=("alarmLevel", "importance"),
)

_KINDS: Final = {"MIGRATION": Kind.MIGRATION, "SYNC": Kind.SYNC}


async def call(transport: Transport, action: str, body: dict[str, Any]) -> bytes:
    """Call one read-only Action and return the raw answer body."""
    answer = await transport.request("POST", f"{PATH}?Action={action}", json_body=body)
    return answer.body


def parse_progress(
    project_id: str, body: bytes, *, kind: Kind = Kind.UNKNOWN, name: str | None = None
) -> ProjectProgress:
    return build_progress(
        project_id=project_id,
        api=Api.V4,
        kind=kind,
        data=unwrap_object(body),
        fields=FIELDS,
        name=name,
    )


def parse_project(body: bytes) -> tuple[Kind, str | None]:
    """Read a project's type and name from ``DescribeProject``."""
    data = unwrap_object(body)
    raw_type = data.get("type")
    kind = (
        _KINDS.get(raw_type.strip().upper(), Kind.UNKNOWN)
        if isinstance(raw_type, str)
        else Kind.UNKNOWN
    )
    raw_name = data.get("name")
    name = (
        " ".join(raw_name.split())[:128] if isinstance(raw_name, str) and raw_name.strip() else None
    )
    return kind, name
