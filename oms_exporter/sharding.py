"""Split projects across replicas: a stable, consistent hash of (oms, project_id).

Every replica computes the same owner for a project with no coordination; the union of
all shards is every project and no two shards share one. Jump consistent hashing (Lamping
and Veach, 2014) moves only about 1/(N+1) of the projects when the shard count goes from
N to N+1, where ``hash % N`` would move almost all of them and reset their counters.
"""

from __future__ import annotations

import hashlib
import os
import re
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
        return shard_of(oms, project_id, self.count) == self.index


_MASK64: Final = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket of a 64-bit key among ``buckets``."""
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * 2862933555777941757 + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def shard_of(oms: str, project_id: str, count: int) -> int:
    """The shard that polls a project; the same in every process (blake2b, not hash())."""
    digest = hashlib.blake2b(f"{oms}\x00{project_id}".encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), count)


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
