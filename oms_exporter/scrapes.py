"""Scrapes that overlap in time share one render of /metrics: 200 at once cost one body.

A render's pieces are made once, by whichever reader is ahead, and kept for newcomers
for a short window and up to a size; past that, each piece is dropped once every reader
has passed it. gzip output is shared too, deflated in worker threads (``gzipbody``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from oms_exporter.collector import Part
from oms_exporter.gzipbody import (
    gzip_pieces,
    plain_groups,
    plain_size,
    plain_text,
    units_of,
)

# Builds the exposition's parts (headers, kept blocks, line lists) for one format:
# True = OpenMetrics.
Produce = Callable[[bool], list[Part]]

# Scrapes starting within this long of a render that is still being sent share it: their
# lag lines are then up to this much older than the scrape.
SHARE_WINDOW_SECONDS: Final = 1.0
# A render is kept whole for newcomers up to this size (gzip: about 5,000 projects with 10
# steps; plain: about 250); past it, newcomers get a render of their own and sent pieces
# are dropped, so that one large scrape costs a few pieces of memory, not its whole body
# (4 MiB here cost 10 MB of RSS at 10,000 projects).
SHARE_MAX_BYTES: Final = 1024 * 1024


class Render:
    """One exposition, made piece by piece by whichever of the scrapes sharing it is ahead.

    While it takes newcomers every piece is kept (a newcomer starts at the first); once
    closed to them, a piece goes as soon as every reader is past it.
    """

    def __init__(
        self,
        parts: list[Part],
        *,
        gzip: bool,
        window_seconds: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._monotonic = monotonic
        self._until = monotonic() + window_seconds
        # The kept blocks as they are at this scrape, the rest joined into segments.
        units = units_of(parts)
        # Plain pieces come straight from the blocks, settled ones inflated on the loop (in
        # worker threads, waiting for the GIL made a scrape at 10,000 projects take 100 ms
        # instead of 55); gzip ones once what no block holds deflated is deflated, in
        # worker threads (the one step that waits).
        self._source: Iterator[bytes] | None = (
            None if gzip else map(plain_text, plain_groups(units))
        )
        self._units = units if gzip else []
        self._size: int | None = None if gzip else plain_size(units)  # gzip: once deflated
        self._step: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._pieces: list[bytes | None] = []
        self._kept_bytes = 0
        self._done = False
        self._closed = False
        self._at: Counter[int] = Counter()  # readers by the index of their next piece
        self._low = 0  # pieces below this index are dropped
        self.readers = 0

    @property
    def kept_bytes(self) -> int:
        """Pieces still held for readers that have not sent them yet."""
        return self._kept_bytes

    def joinable(self) -> bool:
        """Open to newcomers while young (the lag is of its time) and small enough to keep."""
        self._close_if_due()
        return not self._closed

    def _close_if_due(self) -> None:
        if not self._closed and (
            self._monotonic() >= self._until or self._kept_bytes >= SHARE_MAX_BYTES
        ):
            self._closed = True
            self._drop_passed()

    def arrive(self) -> None:
        self.readers += 1
        self._at[0] += 1

    def leave(self, index: int) -> None:
        self.readers -= 1
        self._at[index] -= 1
        self._drop_passed()

    async def size(self) -> int:
        """The body's length, for Content-Length: a gzip one once what it lacked is deflated.

        Sent as one length rather than chunked: aiohttp then writes each piece as it is,
        where chunking copied every piece once more (52 MB a plain scrape at 10,000
        projects); a deflate that fails is a 500 before any byte, not a cut body.
        """
        while self._size is None:
            if self._failed is not None:
                raise self._failed
            if self._step is None:
                self._step = asyncio.create_task(self._deflate())
            await asyncio.shield(self._step)
        return self._size

    async def piece(self, index: int) -> bytes | None:
        """The reader at ``index`` moves past its next piece; None once it has them all."""
        while index >= len(self._pieces) and not self._done:
            if self._failed is not None:  # every reader fails, none gets a cut body
                raise self._failed
            if self._source is not None:
                self._next()
                continue
            if self._step is None:
                self._step = asyncio.create_task(self._deflate())
            # Shielded: a reader that hangs up must not lose what the others need.
            await asyncio.shield(self._step)
        if index >= len(self._pieces):
            return None
        piece = self._pieces[index]
        assert piece is not None, "pieces are dropped only once every reader is past them"
        self._at[index] -= 1
        self._at[index + 1] += 1
        self._drop_passed()
        return piece

    def _add(self, piece: bytes | None) -> None:
        if piece is None:
            self._done = True
        elif piece:
            self._pieces.append(piece)
            self._kept_bytes += len(piece)
            self._close_if_due()  # too old or too large to keep whole: passed pieces can go

    def _next(self) -> None:
        assert self._source is not None
        try:
            self._add(next(self._source, None))
        except Exception as error:
            self._failed = error
            raise

    async def _deflate(self) -> None:
        try:
            body = await gzip_pieces(self._units)
            self._source, self._size = body.pieces, body.size
        except Exception as error:
            self._failed = error
            raise
        finally:
            self._units = []  # the source holds what it needs
            self._step = None

    def _drop_passed(self) -> None:
        if not self._closed:
            return
        while self._low < len(self._pieces) and self._at[self._low] == 0:
            piece = self._pieces[self._low]
            self._kept_bytes -= len(piece) if piece is not None else 0
            self._pieces[self._low] = None
            del self._at[self._low]
            self._low += 1


class SharedRenders:
    """At most one render open to newcomers per (format, encoding): N scrapes, one body."""

    def __init__(
        self,
        *,
        window_seconds: float = SHARE_WINDOW_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_seconds
        self._monotonic = monotonic
        self._open: dict[tuple[bool, bool], Render] = {}  # the newest of each kind
        self._live: set[Render] = set()  # every render some scrape is still sending
        self.renders = 0  # renders made so far, to show that scrapes share them

    @property
    def in_flight(self) -> int:
        """Renders some scrape is still sending."""
        return len(self._live)

    @property
    def kept_bytes(self) -> int:
        """What those renders hold in memory: the cost of sharing, bounded."""
        return sum(render.kept_bytes for render in self._live)

    @contextmanager
    def use(self, produce: Produce, *, openmetrics: bool, gzip: bool) -> Iterator[Reader]:
        """Join the open render of this kind if it still takes newcomers, else start one."""
        key = (openmetrics, gzip)
        render = self._open.get(key)
        if render is None or not render.joinable():
            parts = produce(openmetrics)
            render = Render(
                parts,
                gzip=gzip,
                window_seconds=self._window,
                monotonic=self._monotonic,
            )
            self._open[key] = render
            self._live.add(render)
            self.renders += 1
        reader = Reader(render)
        try:
            yield reader
        finally:
            reader.leave()
            if render.readers == 0:  # nobody sends it any more: its memory goes
                self._live.discard(render)
                if self._open.get(key) is render:
                    del self._open[key]


class Reader:
    """One scrape's place in a shared render."""

    def __init__(self, render: Render) -> None:
        self._render = render
        self._index = 0
        render.arrive()

    async def size(self) -> int:
        return await self._render.size()

    async def next_piece(self) -> bytes | None:
        piece = await self._render.piece(self._index)
        if piece is not None:
            self._index += 1
        return piece

    def leave(self) -> None:
        self._render.leave(self._index)
