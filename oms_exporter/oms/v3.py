"""OMS 3.3: ``GET /api/omsp/v2/{migrations|sync}/{id}/progress``, one path per project kind."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from oms_exporter.model import Api, Kind, ProjectProgress
from oms_exporter.oms.envelope import unwrap_object
from oms_exporter.oms.normalise import FieldNames, build_progress
from oms_exporter.oms.transport import Transport

MIGRATION_FIELDS: Final = FieldNames(
    enable_struct=("enableStructMigration",),
    enable_full=("enableFullMigration",),
    struct_progress=("structMigrationProgress",),
    full_progress=("fullMigrationProgress",),
    enable_reverse=("enableReverseIncrSync",),
    reverse_checkpoint=("reverseIncrSyncCheckpoint",),
    alarm_level=("importance", "alarmLevel"),
)

# The sync document's table says *Migration*, its sample sends *Sync*: accept both.
SYNC_FIELDS: Final = FieldNames(
    enable_struct=("enableStructSync", "enableStructMigration"),
    enable_full=("enableFullSync", "enableFullMigration"),
    struct_progress=("structSyncProgress", "structMigrationProgress"),
    full_progress=("fullSyncProgress", "fullMigrationProgress"),
    enable_reverse=(),
    reverse_checkpoint=(),
    alarm_level=("importance", "alarmLevel"),
)

_SEGMENT: Final = {Api.V3_MIGRATION: "migrations", Api.V3_SYNC: "sync"}
_KIND: Final = {Api.V3_MIGRATION: Kind.MIGRATION, Api.V3_SYNC: Kind.SYNC}
_FIELDS: Final = {Api.V3_MIGRATION: MIGRATION_FIELDS, Api.V3_SYNC: SYNC_FIELDS}


def path(api: Api, project_id: str) -> str:
    return f"/api/omsp/v2/{_SEGMENT[api]}/{quote(project_id, safe='')}/progress"


async def fetch(transport: Transport, api: Api, project_id: str) -> ProjectProgress:
    answer = await transport.request("GET", path(api, project_id))
    return parse_progress(api, project_id, answer.body)


def parse_progress(api: Api, project_id: str, body: bytes) -> ProjectProgress:
    return build_progress(
        project_id=project_id,
        api=api,
        kind=_KIND[api],
        data=unwrap_object(body),
        fields=_FIELDS[api],
    )
