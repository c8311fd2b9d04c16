"""A 4.x project as ListProjects and DescribeProject show it, in the shape real OMS sends.

Beyond what the exporter reads (id, name, type, status, labels, endpoint types, alarm
state, verification flags), a real item carries the source and sink connection infos
(hosts, ports, database user names), the mapping of every table, four transfer configs
and the steps: 150 items of a few hundred tables each make a page of megabytes.
Everything here is a pure function of the project's definition and the clock.
"""

from __future__ import annotations

from typing import Final

from oms_exporter.simulator.scenario import (
    FULL,
    ProjectDef,
    Snapshot,
    hostile,
    iso,
    phase_ends,
    project_steps,
    stable_hash,
)

TABLES_PER_DATABASE: Final = 100
_ENGINES: Final = {
    "MYSQL": ("MYSQL_PUBLIC", "5.7.27-log", 3306),
    "OB_MYSQL": ("OB_MYSQL_PUBLIC", "4.2.1.8", 2881),
    "ORACLE": ("ORACLE", "19c", 1521),
    "OB_ORACLE": ("OB_ORACLE", "4.2.1.8", 2881),
    "SYBASE": ("SYBASE", "16.0", 5000),
    "KAFKA": ("KAFKA", "2.8", 9092),
}


def project_info(
    defn: ProjectDef,
    snap: Snapshot,
    *,
    now: float,
    started_at: float,
    time_scale: float,
    tables: int = 0,
) -> dict[str, object]:
    """Render a project the way 4.x DescribeProject and ListProjects list it."""

    def wall(t: float) -> str:
        return iso(started_at + (t - defn.offset_seconds) / time_scale)

    full_end = phase_ends(defn)[FULL]
    t = snap.lifecycle_seconds
    failed = snap.status == "FAILED"
    data: dict[str, object] = {
        "workerGradeId": f"wg_{stable_hash(defn.id):08x}",
        "id": defn.id,
        "type": defn.kind.upper(),
        "name": defn.name,
        "labels": [{"id": f"lbl_{stable_hash(x):08x}", "name": x} for x in defn.labels],
        "owner": "admin",
        "importance": defn.importance,
        "status": snap.status,
        "gmtCreate": wall(-60.0),
        "gmtModified": wall(max(0.0, min(t, full_end))),
        "gmtStart": wall(0.0) if t >= 0 else None,
        "gmtFinish": wall(min(t, full_end)) if snap.status == "FINISHED" else None,
        "destConnId": None,
        "isMerging": False,
        "isModifying": False,
        "isSubProject": False,
        "sourceEndpointType": defn.source_type,
        "sinkEndpointType": defn.sink_type,
        "transferMapping": transfer_mapping(defn, tables),
        "commonTransferConfig": {
            "tableCategory": "ALL",
            "activeActive": False,
            "mqSerializerType": "DEFAULT",
            "mqPartitionMode": "HASH",
            "datahubTopicType": "TUPLE",
        },
        "enableStructTransfer": defn.struct,
        "structTransferConfig": {
            "byteCharConvertStrategy": "DO_NOTHING_IF_BYTE_USED",
            "deferIndexCreation": True,
        }
        if defn.struct
        else None,
        "enableFullTransfer": defn.full,
        "enableFullVerify": defn.full_verify,
        "fullTransferConfig": {
            "nonePkUkTruncateDstTable": True,
            "allowDestTableNotEmpty": True,
            "fullTransferSpeedMode": "STEADY",
            "fullVerifySpeedMode": "STEADY",
            "throttleRps": None,
            "throttleIOPS": None,
        }
        if defn.full
        else None,
        "enableIncrTransfer": defn.incr,
        "enableIncrVerify": defn.incr_verify,
        "enableReverseIncrTransfer": defn.reverse and defn.kind == "migration",
        "incrTransferConfig": {
            "startTimestamp": None,
            "recordTypeWhiteList": ["INSERT", "UPDATE", "DELETE"],
            "storeLogKeptHour": 168,
            "enableSequencingWithinTxn": True,
            "incrSyncConcurrency": 64,
            "enableIncrSyncStatistics": False,
            "throttleRps": None,
            "throttleIOPS": None,
        }
        if defn.incr
        else None,
        "sourceConnectInfo": connect_info(defn, "source", defn.source_type),
        "sinkConnectInfo": connect_info(defn, "sink", defn.sink_type),
        "steps": project_steps(defn, snap, started_at=started_at, time_scale=time_scale),
        "extraInfo": None,
        "alarmStats": {
            "target": None,
            "alarming": failed,
            "recentlyTriggerCount": 1 if failed else None,
            "ruleToRecentlyTriggerCount": {"PROJECT_FAILED": 1} if failed else None,
            "alarmContent": "The project failed" if failed else None,
            "openMonitor": True,
        },
    }
    return data if defn.fault == "none" else hostile(defn, data, id_key="id")


def transfer_mapping(defn: ProjectDef, tables: int) -> dict[str, object]:
    """The SPECIFIC mapping of ``tables`` tables, in databases of up to 100."""
    databases: list[dict[str, object]] = []
    for first in range(0, tables, TABLES_PER_DATABASE):
        name = f"db_{first // TABLES_PER_DATABASE:03d}"
        count = min(TABLES_PER_DATABASE, tables - first)
        databases.append(
            {
                "clusterName": None,
                "tenantName": None,
                "name": name,
                "mappedName": name,
                "tables": [
                    {
                        "name": f"table_{first + i:05d}",
                        "mappedName": f"table_{first + i:05d}",
                        "whereClause": None,
                        "filterColumns": [],
                        "shardColumns": [],
                    }
                    for i in range(count)
                ],
                "views": [],
            }
        )
    return {"mode": "SPECIFIC", "databases": databases}


def connect_info(defn: ProjectDef, side: str, endpoint_type: str) -> dict[str, object]:
    """An endpoint's connection info: host, port and user name of another system."""
    h = stable_hash(f"{defn.id}/{side}")
    engine, version, port = _ENGINES.get(endpoint_type, (endpoint_type, "1.0", 3306))
    ob = endpoint_type.startswith("OB_")
    return {
        "id": f"e_{h:08x}",
        "endpointName": f"sim-{side}-{h % 1000:03d}",
        "endpointId": f"e_{h:08x}",
        "endpointSide": None,
        "dbEngine": engine,
        "connectionInfo": None,
        "username": f"sim_{side}_user_{h % 100:02d}",
        "version": version,
        "timezone": "+08:00" if ob else "UTC",
        "charset": "utf8mb4",
        "nlsLengthSemantics": None,
        "operatingSystem": None if ob else "Linux",
        "region": "sim-region-1",
        "ocpName": "",
        "connExtraAttributes": {
            "cluster": f"sim-cluster-{h % 10}",
            "tenant": f"sim_tenant_{h % 10}",
            "isLogicSource": False,
            "useLogProxy": False,
            "drcUser": f"sim_drc_{h % 100:02d}",
            "configUrl": None,
            "logProxyIp": None,
            "logProxyPort": None,
            "noUserAuth": False,
        }
        if ob
        else None,
        "owner": "admin",
        "resourceOwner": "admin",
        "host": f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}",
        "port": port,
    }
