"""Split projects across replicas: a stable hash of (oms, project_id), as kube-state-metrics does.

Every replica computes the same owner for a project with no coordination; the union of
all shards is every project and no two shards share one.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from typing import Final

_ORDINAL: Final = re.compile(r"-(\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, oms: str, project_id: str) -> bool:
        if self.count == 1:
            return True
        # crc32, not hash(): Python salts str hashes per process.
        return zlib.crc32(f"{oms}\x00{project_id}".encode()) % self.count == self.index


def ordinal_from_pod_name(name: str | None) -> int | None:
    """A StatefulSet pod is named ``<set>-<ordinal>``; return the ordinal."""
    match = _ORDINAL.search(name or "")
    return int(match.group(1)) if match else None


def resolve_shard(*, index: int | None, count: int) -> Shard:
    """Use the configured index, else the StatefulSet ordinal of POD_NAME or HOSTNAME."""
    if count == 1:
        return Shard()
    if index is None:
        index = ordinal_from_pod_name(os.environ.get("POD_NAME") or os.environ.get("HOSTNAME"))
        if index is None:
            raise ValueError(
                "shard_count > 1 needs shard_index, or a StatefulSet pod name ending in -N"
            )
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not below shard_count {count}")
    return Shard(index=index, count=count)
