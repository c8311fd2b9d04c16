"""How this process uses glibc's heap: fewer collections, freed memory given back.

Elsewhere (musl, macOS) the glibc calls are skipped and nothing changes.
"""

from __future__ import annotations

import ctypes
import gc
from typing import Final

# New objects between young collections (CPython's default is 700): see tune_memory.
GC_THRESHOLD: Final = 50_000
# Buffers from this size up are mapped, and so returned when freed: see tune_memory.
MMAP_THRESHOLD_BYTES: Final = 256 * 1024
# Once kept blocks let go of this much text, freed heap pages are given back (trim).
TRIM_AFTER_BYTES: Final = 1024 * 1024
_M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc has it, musl does not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC: Final = _libc()


def tune_memory() -> None:
    """Collect garbage less often, and have glibc give freed buffers back at once.

    CPython collects every 700 new objects: a ListProjects page parses into some 100,000
    objects, which set off 140 collections each, and at 10,000 projects a tenth of the
    first round's CPU went to the collector finding nothing (OMS answers make no reference
    cycles). What was loaded before polling (modules, settings) is frozen out of them.

    glibc serves a freed 1 MB buffer from its heap next time instead of mapping it, once
    one was freed (its threshold grows to 32 MB), and keeps the heap: ListProjects pages
    and a round's answers left RSS about 6 MB above what stays in use. A fixed threshold
    of 256 KB keeps those mapped, returned to the system when freed, while a scrape's
    128 KB pieces stay on the heap: at 64 KB, mapping and faulting them in doubled the
    plain /metrics time. Elsewhere (musl) nothing changes.
    """
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_BYTES)


def trim() -> None:
    """Give freed heap pages back to the system, wherever they are in the heap.

    Kept blocks that settle into their deflated segments free about 35 MB of 14 KB texts
    at 10,000 projects, among objects that stay: glibc returns only the top of its heap
    by itself, so RSS stayed where it was. malloc_trim(0) also releases the free pages
    in the middle (glibc 2.8 and later). ctypes releases the GIL for the call.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
