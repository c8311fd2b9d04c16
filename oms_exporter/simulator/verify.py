"""4.x ListProjectFullVerifyResult: the full verification's tables, as the clock has them.

The verifier (scenario's FULL_VERIFIER step) compares the tables of the transfer mapping one
after the other during VERIFY_SECONDS after the full transfer. A project's
``verify_different_rows`` turn up in its first and last tables, each when that table is
done. A pure function of the project's definition and the clock, like every other answer;
the entries have the shape ODC reads (``FullVerifyTableStatisticVO``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from oms_exporter.simulator.project import TABLES_PER_DATABASE
from oms_exporter.simulator.scenario import (
    DEEP_MARK,
    FULL,
    HUGE_NUMBER,
    SURROGATE,
    VERIFY_SECONDS,
    ProjectDef,
    Snapshot,
    phase_ends,
)

MAX_PAGE_SIZE: Final = 150
_RESULT_TEXT: Final = {
    "CONSISTENT": ("Consistent", "一致"),
    "INCONSISTENT": ("Inconsistent", "不一致"),
    "RUNNING": (None, "校验中"),
    "RUNTIME_EXCEPTION": ("Transfer task exited abnormally", "运行异常"),
}


@dataclass(frozen=True, slots=True)
class VerifyQuery:
    """What a ListProjectFullVerifyResult request asks: filters and one page."""

    page_number: int = 1
    page_size: int = 10
    source_schemas: frozenset[str] = frozenset()
    dest_schemas: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()


def _differences(different: int, tables: int) -> dict[int, tuple[int, int, int]]:
    """Where the different rows are: (mismatched, source only, dest only) by table index."""
    if different <= 0 or tables <= 0:
        return {}
    mismatched, source_only = different // 2, different // 4
    dest_only = different - mismatched - source_only
    if tables == 1:
        return {0: (mismatched, source_only, dest_only)}
    return {0: (mismatched, source_only, 0), tables - 1: (0, 0, dest_only)}


def _table_entry(
    defn: ProjectDef,
    snap: Snapshot,
    index: int,
    *,
    rows: int,
    done: int,
    found: tuple[int, int, int],
) -> dict[str, object]:
    database = f"db_{index // TABLES_PER_DATABASE:03d}"
    mismatched, source_only, dest_only = found if done == 100 else (0, 0, 0)
    if done == 100:
        status = "FINISHED"
        result = "INCONSISTENT" if mismatched + source_only + dest_only else "CONSISTENT"
    elif snap.status == "FAILED":
        status, result = "ERROR", "RUNTIME_EXCEPTION"
    else:
        status, result = ("SUSPEND" if snap.status == "SUSPEND" else "RUNNING"), "RUNNING"
    message, description = _RESULT_TEXT[result]
    return {
        "sourceTableName": f"table_{index:05d}",
        "sourceSchemaName": database,
        "destSchemaName": database,
        "sourceOnlyCount": source_only,
        "destOnlyCount": dest_only,
        "mismatchedCount": mismatched,
        "consistentCount": max(0, rows * done // 100 - mismatched - source_only),
        "progress": str(done),  # a string, in percent (Alibaba Cloud's documents: "80")
        "message": message,
        "status": status,
        "resultType": result,
        "resultDesc": description,
        "errorDetails": None,
    }


def verified_tables(
    defn: ProjectDef, snap: Snapshot, *, tables: int
) -> tuple[int | None, list[dict[str, object]]]:
    """``differentNumber`` and every table's entry at this moment; (None, []) before start."""
    start = phase_ends(defn)[FULL]
    t = snap.lifecycle_seconds
    all_done = snap.status == "FINISHED" or t >= start + VERIFY_SECONDS
    if not defn.full_verify or (t < start and snap.status != "FINISHED"):
        return None, []
    if tables <= 0:
        return (defn.verify_different_rows if all_done else 0), []
    span = VERIFY_SECONDS / tables
    per_table = max(1, defn.capacity_rows // tables)
    found = _differences(defn.verify_different_rows, tables)
    entries = []
    different = 0
    for index in range(tables):
        begin = start + index * span
        if all_done or t >= begin + span:
            done = 100
            different += sum(found.get(index, (0, 0, 0)))
        elif t >= begin:
            done = int(100 * (t - begin) / span)
        else:
            done = 0
        where = found.get(index, (0, 0, 0))
        entries.append(_table_entry(defn, snap, index, rows=per_table, done=done, found=where))
    return different, entries


def _matches(entry: dict[str, object], query: VerifyQuery) -> bool:
    if query.source_schemas and entry["sourceSchemaName"] not in query.source_schemas:
        return False
    if query.dest_schemas and entry["destSchemaName"] not in query.dest_schemas:
        return False
    return not (query.statuses and entry["status"] not in query.statuses)


def matching_tables(
    defn: ProjectDef, snap: Snapshot, *, tables: int, query: VerifyQuery
) -> tuple[int | None, list[dict[str, object]]]:
    different, entries = verified_tables(defn, snap, tables=tables)
    return different, [entry for entry in entries if _matches(entry, query)]


def verification_data(
    defn: ProjectDef, snap: Snapshot, *, tables: int, query: VerifyQuery
) -> dict[str, object]:
    """The ``data`` of one page: ``{differentNumber, fullVerifyTableStatistics}``."""
    different, entries = matching_tables(defn, snap, tables=tables, query=query)
    first = (query.page_number - 1) * query.page_size
    page = entries[first : first + query.page_size]
    data: dict[str, object] = {"differentNumber": different, "fullVerifyTableStatistics": page}
    return data if defn.fault == "none" else _hostile(defn, data, page)


def _hostile(
    defn: ProjectDef, data: dict[str, object], page: list[dict[str, object]]
) -> dict[str, object]:
    """Act out the data faults in a verification answer."""
    fault = defn.fault
    for entry in page:
        if fault == "huge_number":
            for key in ("sourceOnlyCount", "destOnlyCount", "mismatchedCount", "consistentCount"):
                entry[key] = HUGE_NUMBER
            entry["progress"] = str(HUGE_NUMBER)
        elif fault == "surrogate_name":
            entry["sourceTableName"] = f"{entry['sourceTableName']}{SURROGATE}"
        elif fault == "surrogate_status":
            entry["status"] = f"{entry['status']}{SURROGATE}"
            entry["resultType"] = f"{entry['resultType']}{SURROGATE}"
    if fault == "huge_number":
        data["differentNumber"] = HUGE_NUMBER
    if fault == "deep_nesting":
        data["fullVerifyTableStatistics"] = DEEP_MARK
    return data
