"""Build the per-project part of /metrics from the store, kube-state-metrics style.

Each family's lines are kept encoded in blocks of BLOCK_PROJECTS projects. When the
store says a project changed, it is marked in the families the change can touch; a
scrape renders the marked projects again, copies the rest of their blocks, and sends
the others as kept. Only the lag, which depends on the time of the scrape, is formatted
per scrape, and the cut-over readiness lines of a project when what blocks it changed.
At 10,000 projects this keeps /metrics in milliseconds instead of a second of event-loop
time, and the kept body in about 1,300 objects rather than one per project and family
(144,000, whose headers and dict entries cost 14 MB). A project polled every round
re-renders its two lines of last success and checkpoint once per scrape, not per poll.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from itertools import accumulate
from operator import attrgetter
from typing import Final, Literal

from oms_exporter.families import (
    BLOCKED_FAMILY_NAME,
    BLOCKED_HELP,
    LAG_FAMILY_NAME,
    LAG_HELP,
    PROJECT_FAMILIES,
    READY_FAMILY_NAME,
    READY_HELP,
    SKEW_FAMILY_NAME,
    SKEW_HELP,
    Family,
    base_labels,
    escape_label,
    format_value,
    header,
    label,
    render_family,
)
from oms_exporter.gzipbody import Deflated, KeptText, deflate_kept, inflate, plain_text, units_of
from oms_exporter.metricfilter import MetricFilter
from oms_exporter.model import SETTLED_STATUSES, ProjectProgress
from oms_exporter.readiness import (
    BLOCKERS,
    DEFAULT_MAX_LAG_SECONDS,
    applies,
    checkpoints_read,
    clock_blocked_span,
    forward_checkpoint,
    settled_checks,
)
from oms_exporter.store import Key, ProjectState, Store

_LAG = Family(LAG_FAMILY_NAME, LAG_HELP, "gauge", lambda _state: ())
_SKEW = Family(SKEW_FAMILY_NAME, SKEW_HELP, "gauge", lambda _state: ())
_READY_FAMILY = Family(READY_FAMILY_NAME, READY_HELP, "gauge", lambda _state: ())
_BLOCKED_FAMILY = Family(BLOCKED_FAMILY_NAME, BLOCKED_HELP, "gauge", lambda _state: ())
_HIDDEN = frozenset(i for i, family in enumerate(PROJECT_FAMILIES) if family.hidden_when_stale)
_INDEX = {family.name: i for i, family in enumerate(PROJECT_FAMILIES)}
_UP = _INDEX["oms_project_up"]
_LAST_SUCCESS = _INDEX["oms_project_last_success_timestamp_seconds"]
_ERRORS = _INDEX["oms_project_poll_errors"]
_CHECKPOINTS = _INDEX["oms_project_incr_sync_checkpoint_timestamp_seconds"]
_ALL = frozenset(range(len(PROJECT_FAMILIES)))
# The readiness lines are kept in blocks too, after the families'.
_READY = len(PROJECT_FAMILIES)
_BLOCKED = _READY + 1
_KINDS = _BLOCKED + 1
# What a scrape is made of: headers and kept blocks, and line lists made for that scrape.
Part = bytes | list[bytes] | KeptText
# Projects per kept block: about 14 KB a block for the 10 lines of steps of each.
BLOCK_PROJECTS: Final = 128
# After a poll round, rendered texts are deflated in batches of about this much.
PREPARE_BATCH_BYTES: Final = 4 * 1024 * 1024


def _retrieve(task: asyncio.Future[None]) -> None:
    """A batch's failure is raised where prepare awaits it; if prepare failed first, the
    batch's own failure is not news."""
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class _Block:
    """Up to BLOCK_PROJECTS projects' lines of one family, joined, and where each ends.

    A change marks the project's position; the next scrape renders only the marked
    projects again and copies the rest from the kept bytes, a slice per run of unmarked
    ones: a round where one project in seven moved costs about 18 renders, not 128.
    """

    # The lines, None once only ``deflated`` is kept (see gzipbody: a block that stays the
    # same is held as about 1/20 of its size); at least one of the two is there.
    text: bytes | None = b""
    # Per position, where its lines end: 4 bytes each, where a list held an int object.
    ends: array[int] = field(default_factory=lambda: array("I"))
    # Positions to render again, a bit each: a set of 128 ints took 8 KB a block, and
    # with every block of every family marked after a round, 16 MB at 10,000 projects.
    marked: int = 0
    # The lines deflated, made by the first gzip scrape that needs them.
    deflated: Deflated | None = None

    def mark(self, position: int) -> None:
        self.marked |= 1 << position

    def marked_positions(self) -> Iterator[int]:
        """The marked positions, in order."""
        mask = self.marked
        while mask:
            lowest = mask & -mask
            yield lowest.bit_length() - 1
            mask ^= lowest

    def span(self, position: int) -> tuple[int, int]:
        return (self.ends[position - 1] if position else 0), self.ends[position]

    def lines(self) -> bytes:
        """The lines, inflated again if only their segment is kept."""
        if self.text is not None:
            return self.text
        assert self.deflated is not None, "a block without text keeps its segment"
        return inflate(self.deflated)

    def settle(self) -> int:
        """Unchanged since its segment was made: keep the segment alone; the bytes freed."""
        if self.text is None or self.deflated is None:
            return 0
        freed, self.text = len(self.text), None
        return freed


# Families whose lines depend only on the progress OMS reported.
_FROM_PROGRESS = _ALL - {_UP, _LAST_SUCCESS, _ERRORS}
# Every progress field but the checkpoints, built from the dataclass so none is forgotten.
_ALL_BUT_CHECKPOINTS = attrgetter(
    *(field.name for field in fields(ProjectProgress) if field.name != "checkpoints")
)


# How a project's progress differs from what was rendered (see _progress_change).
_Change = Literal["same", "checkpoints", "more"]


def _progress_change(old: _Project | None, state: ProjectState) -> _Change:
    """How the progress differs from what was rendered: "same", "checkpoints" or "more".

    "checkpoints" is steady incremental sync: the checkpoint moved and nothing else.
    """
    if old is None:
        return "more"
    if old.progress is state.progress or old.progress == state.progress:
        return "same"
    if (
        old.progress is not None
        and state.progress is not None
        and _ALL_BUT_CHECKPOINTS(old.progress) == _ALL_BUT_CHECKPOINTS(state.progress)
    ):
        return "checkpoints"
    return "more"


def _changed_families(old: _Project | None, state: ProjectState, change: _Change) -> frozenset[int]:
    """Which families a change can have touched: usually one or two, not all."""
    if old is None:
        return _ALL
    changed: set[int] = set()
    if change == "checkpoints":
        changed.add(_CHECKPOINTS)
    elif change == "more":
        changed |= _FROM_PROGRESS
    if old.up != state.up:
        changed.add(_UP)
    if old.last_success_seconds != state.last_success_seconds:
        changed.add(_LAST_SUCCESS)
    if old.errors != sum(state.errors.values()):
        changed.add(_ERRORS)
    return frozenset(changed)


_NO_SPAN: Final = (math.inf, -math.inf)


@dataclass(slots=True)
class _Project:
    """What was last rendered for one project."""

    state: ProjectState  # the store's: what the project's lines are rendered from
    labels: str  # its base labels: they never change
    progress: ProjectProgress | None
    # (the lag line up to its value, checkpoint seconds) per numeric checkpoint
    lags: tuple[tuple[str, float], ...]
    last_success_seconds: float | None
    up: bool
    errors: int  # polls failed so far: counters only grow, so the sum tells a change
    # Cut-over readiness, None when the project cannot cut over.
    cutover: _Cutover | None = None
    # Scrape times (after, until] for which what the clock decides of its readiness stands:
    # none until a scrape decides it (see readiness.clock_blocked_span).
    clock_span: tuple[float, float] = _NO_SPAN


@dataclass(slots=True)
class _Cutover:
    """One project's cut-over readiness: what the progress decides, and what its lines say.

    What holds is decided per scrape (stale and lag depend on its time), but it seldom
    changes: the lines are kept in blocks like a family's and rendered again only when it
    does (10 lines per migration formatted on every scrape were most of its time).
    """

    settled_blocked: frozenset[str]  # the blockers decided by the progress alone
    checkpoint_seconds: float | None  # the forward checkpoint the lag check reads
    held: frozenset[str] | None = None  # what the kept lines say holds; None: not rendered


def _ready_line(project: _Project) -> bytes:
    held = project.cutover.held if project.cutover is not None else None
    if held is None:
        return b""
    return f"{READY_FAMILY_NAME}{{{project.labels}}} {0.0 if held else 1.0}\n".encode()


def _blocked_lines(project: _Project) -> bytes:
    held = project.cutover.held if project.cutover is not None else None
    if held is None:
        return b""
    return "".join(
        f"{BLOCKED_FAMILY_NAME}{{{project.labels}{label('blocker', blocker)}}} "
        f"{1.0 if blocker in held else 0.0}\n"
        for blocker in BLOCKERS
    ).encode()


def _family_lines(family: Family) -> Callable[[_Project], bytes]:
    def lines(project: _Project) -> bytes:
        return render_family(family, project.state, project.labels).encode()

    return lines


# Per kind of kept block (the families, then the readiness lines): a project's lines.
_LINES: Final = [*map(_family_lines, PROJECT_FAMILIES), _ready_line, _blocked_lines]


def _cutover(
    old: _Project | None, change: _Change, progress: ProjectProgress | None
) -> _Cutover | None:
    if old is not None and change == "same":
        return old.cutover
    if progress is None or not applies(progress):
        return None
    if old is not None and change == "checkpoints":
        kept = old.cutover
        if (
            kept is not None
            and old.progress is not None
            and checkpoints_read(old.progress) == checkpoints_read(progress)
        ):  # steady incremental sync: the settled checks stand, their lines are kept
            kept.checkpoint_seconds = forward_checkpoint(progress)
            return kept
    return _Cutover(
        settled_blocked=frozenset(c.blocker for c in settled_checks(progress) if c.blocked),
        checkpoint_seconds=forward_checkpoint(progress),
    )


def _lags(state: ProjectState, labels: str) -> tuple[tuple[str, float], ...]:
    """The lag lines up to their values; none once the project settled (FINISHED, ...):
    its sync has stopped, and a lag from its last checkpoint would grow for good."""
    if state.progress is None or state.progress.status in SETTLED_STATUSES:
        return ()
    return tuple(
        (f"{LAG_FAMILY_NAME}{{{labels}{label('direction', point.direction)}}} ", point.seconds)
        for point in state.progress.checkpoints
        if point.seconds is not None
    )


@dataclass(frozen=True, slots=True)
class _LagTable:
    """Every lag line up to its value and the checkpoint it counts from, in publishing order.

    Made again only when a lag line comes or goes or a checkpoint moves: a scrape between
    poll rounds then only subtracts and formats (10,000 projects looped over per scrape
    cost more than the formatting).
    """

    prefixes: list[str]
    seconds: list[float]
    newest: dict[str, float]  # per OMS, its latest checkpoint; -inf where it has none

    @classmethod
    def of(cls, projects: dict[Key, _Project], hidden: frozenset[Key]) -> _LagTable:
        table = cls([], [], dict.fromkeys({key[0] for key in projects}, -math.inf))
        for key, project in projects.items():
            if key in hidden:
                continue
            for prefix, seconds in project.lags:
                table.prefixes.append(prefix)
                table.seconds.append(seconds)
                table.newest[key[0]] = max(table.newest[key[0]], seconds)
        return table

    def lines(self, now: float) -> list[str]:
        """The lag lines at ``now``: a checkpoint ahead of it (a skewed clock) counts as 0.

        Milliseconds: checkpoints are whole seconds, the time of the scrape is not.
        """
        return [
            f"{prefix}{now - seconds if seconds <= now else 0.0:.3f}\n"
            for prefix, seconds in zip(self.prefixes, self.seconds, strict=True)
        ]

    def ahead(self, now: float) -> dict[str, float]:
        """Per OMS, how far its newest checkpoint is ahead of ``now`` (0 when it is not)."""
        return {oms: max(0.0, newest - now) for oms, newest in self.newest.items()}


class ProjectCollector:
    """Keep every project's exposition lines current; render /metrics from cached blocks."""

    def __init__(
        self,
        store: Store,
        *,
        stale_after_seconds: float,
        poll_interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._store = store
        self._projects: dict[Key, _Project] = {}
        # The projects in the order they are published, None where one was removed; a
        # project's block is its slot // BLOCK_PROJECTS.
        self._order: list[Key | None] = []
        self._slot: dict[Key, int] = {}
        # Per family: its blocks, the projects of slots [b * BLOCK_PROJECTS, ...) each.
        # Then the readiness lines', at _READY and _BLOCKED, kept the same way.
        self._blocks: list[list[_Block]] = [[] for _ in range(_KINDS)]
        self._down: set[Key] = set()
        self._headers: dict[tuple[str, bool], bytes] = {}
        self._settled_bytes = 0  # text freed since take_settled_bytes was last asked
        self._lag_table: _LagTable | None = None  # made again when a lag line changes
        self._preparing: asyncio.Future[None] | None = None  # done when prepare returns
        self.configure(
            stale_after_seconds=stale_after_seconds, poll_interval_seconds=poll_interval_seconds
        )
        store.subscribe(self._on_change)

    def configure(
        self,
        *,
        stale_after_seconds: float,
        poll_interval_seconds: float,
        cutover_max_lag_seconds: dict[str, float] | None = None,
        metric_filter: MetricFilter | None = None,
    ) -> None:
        metric_filter = metric_filter or MetricFilter()
        previous: MetricFilter | None = getattr(self, "_filter", None)
        refilter = previous is not None and metric_filter != previous
        self._filter = metric_filter
        self._allowed = [
            metric_filter.allows_family(family.name, family.type) for family in PROJECT_FAMILIES
        ]
        self._scrape_time_allowed = {
            name: metric_filter.allows(name)
            for name in (LAG_FAMILY_NAME, SKEW_FAMILY_NAME, READY_FAMILY_NAME, BLOCKED_FAMILY_NAME)
        }
        if refilter:  # a reload changed the lists: render every project again
            self._projects.clear()
            self._place_again([])
            for state in self._store:
                self._on_change((state.oms, state.project_id), state)
        self._stale_after = stale_after_seconds
        self._interval = poll_interval_seconds
        # Per OMS name; DEFAULT_MAX_LAG_SECONDS for any not named.
        self._max_lag = dict(cutover_max_lag_seconds or {})
        for project in self._projects.values():  # the limits may have moved
            project.clock_span = _NO_SPAN
        self._poll_note = f"Polled every {poll_interval_seconds:g} seconds."
        self._headers.clear()

    def _on_change(self, key: Key, state: ProjectState | None) -> None:
        # A project not polled yet publishes nothing: `up 0` would claim it failed.
        if state is None or not state.polled:
            if self._projects.pop(key, None) is not None:
                self._unplace(key)
                self._lag_table = None
            self._down.discard(key)
            return
        if state.up:
            self._down.discard(key)
        else:
            self._down.add(key)
        old = self._projects.get(key)
        labels = old.labels if old is not None else base_labels(state)
        change = _progress_change(old, state)
        cutover = _cutover(old, change, state.progress)
        if old is None:
            self._place(key)
        else:
            block, position = divmod(self._slot[key], BLOCK_PROJECTS)
            for index in _changed_families(old, state, change):
                self._blocks[index][block].mark(position)
            if cutover is not old.cutover:  # decided again: rendered at the next scrape
                self._blocks[_READY][block].mark(position)
                self._blocks[_BLOCKED][block].mark(position)
        lags = old.lags if old is not None and change == "same" else _lags(state, labels)
        if old is None or lags != old.lags:
            self._lag_table = None
        self._projects[key] = _Project(
            state=state,
            labels=labels,
            progress=state.progress,
            lags=lags,
            last_success_seconds=state.last_success_seconds,
            up=state.up,
            errors=sum(state.errors.values()),
            cutover=cutover,
        )

    def _place(self, key: Key) -> None:
        """Publish a new project after the others: its lines are rendered at the scrape."""
        slot = len(self._order)
        self._order.append(key)
        self._slot[key] = slot
        block, position = divmod(slot, BLOCK_PROJECTS)
        for blocks in self._blocks:
            if block == len(blocks):
                blocks.append(_Block())
            kept = blocks[block]
            kept.ends.append(kept.ends[-1] if kept.ends else 0)
            kept.mark(position)

    def _unplace(self, key: Key) -> None:
        slot = self._slot.pop(key)
        self._order[slot] = None
        block, position = divmod(slot, BLOCK_PROJECTS)
        for blocks in self._blocks:
            blocks[block].mark(position)  # rendered again: as nothing
        holes = len(self._order) - len(self._slot)
        if holes > BLOCK_PROJECTS and holes > len(self._order) // 4:  # many removed: close up
            self._place_again([key for key in self._order if key is not None])

    def _place_again(self, order: list[Key]) -> None:
        self._order = []
        self._slot = {}
        self._blocks = [[] for _ in range(_KINDS)]
        for key in order:
            self._place(key)

    def _stale(self, now: float) -> frozenset[Key]:
        """Failing projects whose last success is older than the stale window."""
        stale = set()
        for key in self._down:
            project = self._projects.get(key)
            last = project.last_success_seconds if project is not None else None
            if last is None or now - last > self._stale_after:
                stale.add(key)
        return frozenset(stale)

    def _family_blocks(self, index: int, stale: frozenset[Key]) -> list[bytes | KeptText]:
        """One family's blocks, the marked projects rendered again: a snapshot for one scrape.

        A stale project of a family hidden when stale is cut out of what is sent, and
        kept: it comes back once the project is polled again.
        """
        hidden = stale if index in _HIDDEN else frozenset()
        return self._kept_blocks(index, hidden)

    def _kept_blocks(self, index: int, hidden: frozenset[Key]) -> list[bytes | KeptText]:
        """A kind's blocks for one scrape; unchanged ones keep their segment alone, if made."""
        out: list[bytes | KeptText] = []
        for block, kept in enumerate(self._blocks[index]):
            changed = bool(kept.marked)
            if changed or hidden:  # most blocks are neither, between poll rounds
                keys = self._keys(block)
                if changed:
                    self._render_marked(_LINES[index], kept, keys)
                if hidden and not hidden.isdisjoint(keys):
                    text = kept.lines()
                    text = b"".join(
                        text[slice(*kept.span(position))]
                        for position, key in enumerate(keys)
                        if key not in hidden
                    )
                    if text:
                        out.append(text)
                    continue
            if kept.ends and kept.ends[-1]:  # the end of its last project: its size
                out.append(KeptText(kept.text, kept.deflated, kept))
                if not changed:
                    self._settled_bytes += kept.settle()
        return out

    def _keys(self, block: int) -> list[Key | None]:
        """The projects of a block, by position; None where one was removed."""
        start = block * BLOCK_PROJECTS
        return self._order[start : start + BLOCK_PROJECTS]

    def _render_marked(
        self, lines: Callable[[_Project], bytes], kept: _Block, keys: list[Key | None]
    ) -> None:
        """Render the marked projects of a block again; copy the runs between them."""
        if kept.marked == (1 << len(kept.ends)) - 1:  # new, or a round changed them all
            self._render_all(lines, kept, keys)
            return
        parts: list[bytes] = []
        ends = array("I")
        current = kept.lines()
        copied = 0  # current before this offset is in parts already
        delta = 0  # how far the ends after the last marked project move
        for position in kept.marked_positions():
            old_start, old_end = kept.span(position)
            ends.extend(end + delta for end in kept.ends[len(ends) : position])
            parts.append(current[copied:old_start])
            key = keys[position]
            project = self._projects.get(key) if key is not None else None
            chunk = lines(project) if project is not None else b""
            parts.append(chunk)
            delta += len(chunk) - (old_end - old_start)
            ends.append(old_end + delta)
            copied = old_end
        ends.extend(end + delta for end in kept.ends[len(ends) :])
        parts.append(current[copied:])
        text = b"".join(parts)
        if text != current:  # rendered again to the same lines: its deflate stays good
            kept.text = text
            kept.deflated = None
        kept.ends = ends
        kept.marked = 0

    def _render_all(
        self, lines: Callable[[_Project], bytes], kept: _Block, keys: list[Key | None]
    ) -> None:
        """Render every project of a block: no runs to copy, no ends to move. A block of
        new projects, or of last successes after a round: rendering 10,000 new projects
        took 1.15 s the other way, 0.58 s this way."""
        projects = self._projects
        chunks = [
            b"" if key is None or (project := projects.get(key)) is None else lines(project)
            for key in keys
        ]
        text = b"".join(chunks)
        if text != kept.lines():  # rendered again to the same lines: its deflate stays good
            kept.text = text
            kept.deflated = None
        kept.ends = array("I", accumulate(map(len, chunks)))
        kept.marked = 0

    def _header(self, family: Family, openmetrics: bool) -> bytes:
        key = (family.name, openmetrics)
        text = self._headers.get(key)
        if text is None:
            text = header(family, openmetrics=openmetrics, poll_note=self._poll_note).encode()
            self._headers[key] = text
        return text

    def _readiness(self, now: float, *, openmetrics: bool) -> list[Part]:
        """Cut-over readiness at the time of the scrape: a frozen OMS never looks ready."""
        self._decide_readiness(now)
        out: list[Part] = []
        for index, family in ((_READY, _READY_FAMILY), (_BLOCKED, _BLOCKED_FAMILY)):
            blocks = self._kept_blocks(index, frozenset())
            if blocks and self._scrape_time_allowed[family.name]:
                out += [self._header(family, openmetrics), *blocks]
        return out

    def _decide_readiness(self, now: float) -> None:
        """Decide what holds each project at ``now``; mark the projects where it changed."""
        for key, project in self._projects.items():
            cutover = project.cutover
            if cutover is None:
                continue
            after, until = project.clock_span
            if after < now <= until:  # nothing it reads changed, nor passed a limit
                continue
            stale, lag, project.clock_span = clock_blocked_span(
                up=project.up,  # a stale project is down, so this covers it too
                last_success_seconds=project.last_success_seconds,
                checkpoint_seconds=cutover.checkpoint_seconds,
                now=now,
                interval_seconds=self._interval,
                max_lag_seconds=self._max_lag.get(key[0], DEFAULT_MAX_LAG_SECONDS),
            )
            held = cutover.settled_blocked
            if stale or lag:
                held = held | {name for name, on in (("stale", stale), ("lag", lag)) if on}
            if held != cutover.held:
                cutover.held = held
                block, position = divmod(self._slot[key], BLOCK_PROJECTS)
                self._blocks[_READY][block].mark(position)
                self._blocks[_BLOCKED][block].mark(position)

    async def prepare(self) -> None:
        """Render and deflate what a poll round changed before a scrape asks for it; then
        each block keeps its segment alone (gzipbody), as a scrape would leave it.

        A round changes every project's last success and checkpoint: the first scrape
        after it rendered some 20,000 projects' lines at 10,000 projects and deflated them
        itself, 174 ms instead of 57 plain in the bench, and a Prometheus scraping once
        per poll interval got that every time. Here the loop is given back after each
        block; a plain scrape that comes first renders what is left, as it always did,
        and a gzip scrape waits for this (see prepared). Texts are deflated a batch at a
        time (PREPARE_BATCH_BYTES), in worker threads while the loop renders the next
        batch: the first round's 52 MB at once put RSS 40 MB above where it settles, and
        rendering, then deflating, made the first scrape wait for both in turn.
        """
        done = asyncio.get_running_loop().create_future()
        self._preparing = done
        try:
            await self._prepare()
        finally:
            self._preparing = None
            done.set_result(None)

    async def prepared(self) -> None:
        """Return once no prepare is under way: at once, between rounds.

        A gzip scrape that came while a round was being prepared rendered on the loop
        what prepare had not reached yet, then deflated it all itself: after a first round
        of 10,000 projects with 10 steps, 1.0-1.4 s; prepare, deflating one batch while
        it renders the next, takes about 0.75 s.
        """
        if self._preparing is not None:
            await asyncio.shield(self._preparing)

    async def _prepare(self) -> None:
        self._decide_readiness(self._clock())
        batch: list[_Block] = []
        batch_bytes = 0
        deflating: asyncio.Future[None] | None = None  # the batch before, in the threads
        try:
            for index in range(_KINDS):
                if index < len(PROJECT_FAMILIES) and not self._allowed[index]:
                    continue  # denied: never rendered
                block = 0
                while block < len(self._blocks[index]):  # read afresh: a change may close up
                    kept = self._blocks[index][block]
                    if kept.marked:
                        self._render_marked(_LINES[index], kept, self._keys(block))
                        batch.append(kept)
                        batch_bytes += len(kept.text or b"")
                        if batch_bytes >= PREPARE_BATCH_BYTES:
                            if deflating is not None:  # one batch in the threads at a time
                                await deflating
                            deflating = asyncio.ensure_future(self._deflate_and_settle(batch))
                            deflating.add_done_callback(_retrieve)
                            batch, batch_bytes = [], 0
                        await asyncio.sleep(0)
                    block += 1
            if deflating is not None:
                await deflating
        finally:
            if deflating is not None:
                deflating.cancel()  # prepare failed or was cancelled: so is its batch
        if self._lag_table is None:
            self._lag_table = _LagTable.of(self._projects, frozenset())
        await self._deflate_and_settle([kept for blocks in self._blocks for kept in blocks])

    async def _deflate_and_settle(self, blocks: list[_Block]) -> None:
        """Deflate what has no segment; what is not marked again then keeps it alone."""
        await deflate_kept([kept for kept in blocks if kept.deflated is None])
        for kept in blocks:
            if not kept.marked:
                self._settled_bytes += kept.settle()

    def take_settled_bytes(self) -> int:
        """How much text blocks let go since the last call (see heap.trim)."""
        settled, self._settled_bytes = self._settled_bytes, 0
        return settled

    def render(self, *, openmetrics: bool = False) -> bytes:
        return plain_text(units_of(self.render_parts(openmetrics=openmetrics)))

    def render_parts(self, *, openmetrics: bool = False) -> list[Part]:
        """The exposition as headers, kept blocks and line lists, to be sent in bounded pieces."""
        now = self._clock()
        stale = self._stale(now)
        out: list[Part] = []
        for index, family in enumerate(PROJECT_FAMILIES):
            if not self._allowed[index]:  # denied: never rendered, costs nothing
                continue
            blocks = self._family_blocks(index, stale)
            if blocks:
                out.append(self._header(family, openmetrics))
                out.extend(blocks)
        if stale:  # rare: a table of its own for this scrape
            lags = _LagTable.of(self._projects, stale)
        else:
            if self._lag_table is None:
                self._lag_table = _LagTable.of(self._projects, frozenset())
            lags = self._lag_table
        lag_lines = lags.lines(now)
        ahead = lags.ahead(now)
        allowed = self._scrape_time_allowed
        if lag_lines and allowed[LAG_FAMILY_NAME]:
            out.append(self._header(_LAG, openmetrics))
            out.append("".join(lag_lines).encode())
        out.extend(self._readiness(now, openmetrics=openmetrics))
        if ahead and allowed[SKEW_FAMILY_NAME]:
            out.append(self._header(_SKEW, openmetrics))
            out.append(
                "".join(
                    f'{SKEW_FAMILY_NAME}{{oms="{escape_label(oms)}"}} {format_value(seconds)}\n'
                    for oms, seconds in ahead.items()
                ).encode()
            )
        return out
