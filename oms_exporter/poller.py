"""Own the schedule: poll every project once per interval, bounded, never overlapping.

Each result lands in the store as soon as it arrives, so a hanging project delays no
other project's values. A whole OMS that stops answering is probed once per round
instead of hammered with a request per project.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from oms_exporter.model import ProjectProgress, Reason
from oms_exporter.oms.client import DiscoveryUnavailable, OmsClient
from oms_exporter.oms.errors import OmsError, is_transient
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.settings import DiscoverySettings
from oms_exporter.sharding import Shard
from oms_exporter.store import ProjectState, Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 3
RETRY_BASE_SECONDS: Final = 0.2
# Answers that prove the OMS API itself works, even though the project's poll failed.
_ANSWERED: Final = frozenset({Reason.NOT_FOUND, Reason.API_ERROR})
# Consecutive transport failures with no good answer that mark an OMS unreachable mid-round.
_TRIP_AFTER: Final = 3
_MAX_NOT_FOUND_BACKOFF_ROUNDS: Final = 32
# Statuses whose steps no longer change: fetch them once.
_SETTLED: Final = frozenset({"FINISHED", "RELEASED", "DELETED"})


@dataclass(slots=True)
class Target:
    """One OMS instance and the projects polled on it."""

    name: str
    client: OmsClient
    static_ids: list[str]
    max_concurrency: int
    request_timeout_seconds: float = 10.0
    discovery: DiscoverySettings | None = None  # None: discovery off (or unavailable)
    step_details: bool = False
    shard: Shard = field(default_factory=Shard)
    reachable: bool = True
    discovered_ids: list[str] | None = None
    next_discovery: float = 0.0  # time.monotonic() of the next ListProjects
    discovery_ok: bool = True
    project_ids: list[str] = field(default_factory=list)
    # project_id -> (consecutive not-found polls, earliest next poll)
    not_found: dict[str, tuple[int, float]] = field(default_factory=dict)

    def refresh_ids(self) -> None:
        """Static and discovered IDs, merged, in this replica's shard."""
        merged = dict.fromkeys([*self.static_ids, *(self.discovered_ids or [])])
        self.project_ids = [pid for pid in merged if self.shard.owns(self.name, pid)]


@dataclass(slots=True)
class _RoundOutcome:
    answered: bool = False
    transport_failures: int = 0
    tripped_reason: Reason | None = None
    tripped_message: str = ""


class Poller:
    """Run poll rounds forever; ``first_round_done`` backs /readyz."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: SelfMetrics,
        interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.targets: dict[str, Target] = {}
        self.first_round_done = asyncio.Event()
        self.rounds = 0
        self._clock = clock

    def set_targets(self, targets: list[Target]) -> None:
        """Replace what is polled; the store follows, dropping removed projects."""
        for name in set(self.targets) - {t.name for t in targets}:
            self.store.remove_oms(name)
            self.metrics.forget_oms(name)
        for target in targets:
            old = self.targets.get(target.name)
            if old is not None:
                same_client = old.client is target.client
                if same_client:
                    target.not_found = old.not_found
                    target.reachable = old.reachable
                if target.discovery is not None:
                    # Keep serving the last list until the new settings' discovery ran, so a
                    # reload does not make discovered projects blink out for a round.
                    target.discovered_ids = old.discovered_ids
                    unchanged = same_client and target.discovery == old.discovery
                    target.next_discovery = old.next_discovery if unchanged else 0.0
            self._sync_store(target)
        self.targets = {target.name: target for target in targets}

    def _sync_store(self, target: Target) -> None:
        target.refresh_ids()
        for project_id in self.store.set_projects(target.name, target.project_ids):
            target.client.forget(project_id)
            target.not_found.pop(project_id, None)
        self.metrics.projects.labels(target.name).set(len(target.project_ids))

    async def run(self) -> None:
        """Poll until cancelled; a round starts every interval or when the last one ends."""
        while True:
            started = time.monotonic()
            await self.poll_round()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.interval_seconds - elapsed))

    async def poll_round(self) -> None:
        started = time.monotonic()
        deadline = started + self.interval_seconds
        targets = list(self.targets.values())
        await asyncio.gather(*(self._poll_target(target, deadline) for target in targets))
        self.metrics.round_duration.set(time.monotonic() - started)
        self.metrics.round_timestamp.set(self._clock())
        self.metrics.rounds.inc()
        self.rounds += 1
        self.first_round_done.set()

    async def _discover(self, target: Target) -> None:
        """Refresh the discovered IDs; on failure keep the last list and retry next round."""
        assert target.discovery is not None
        try:
            projects = await target.client.list_projects(target.discovery)
        except DiscoveryUnavailable as exc:
            log.warning("discovery is off for OMS %s: %s", target.name, exc,
                        extra={"oms": target.name})  # fmt: skip
            target.discovery = None
            return
        except OmsError as error:
            self.metrics.discovery_errors.labels(target.name, error.reason.value).inc()
            if target.discovery_ok:
                log.warning("discovery failed on OMS %s, keeping the last project list: %s",
                            target.name, error, extra={"oms": target.name})  # fmt: skip
            target.discovery_ok = False
            return
        if not target.discovery_ok:
            log.info("discovery works again on OMS %s", target.name, extra={"oms": target.name})
        target.discovery_ok = True
        target.discovered_ids = [project.project_id for project in projects]
        target.next_discovery = time.monotonic() + target.discovery.interval
        self.metrics.discovered.labels(target.name).set(len(projects))
        self.metrics.discovery_timestamp.labels(target.name).set(self._clock())
        self._sync_store(target)

    async def _poll_target(self, target: Target, deadline: float) -> None:
        if target.discovery is not None and time.monotonic() >= target.next_discovery:
            await self._discover(target)
        now = self._clock()
        due = deque(pid for pid in target.project_ids if self._due(target, pid, now))
        if not due:
            return
        outcome = _RoundOutcome()
        if not target.reachable:
            # One probe while the OMS is down; the rest wait for it.
            await self._poll_project(target, due.popleft(), deadline, outcome)
        if target.reachable or outcome.answered:

            async def worker() -> None:
                while due:
                    await self._poll_project(target, due.popleft(), deadline, outcome)

            workers = min(target.max_concurrency, len(due))
            await asyncio.gather(*(worker() for _ in range(workers)))
        for project_id in due:  # left unpolled because the OMS is unreachable
            self._record_failure(
                target,
                project_id,
                outcome.tripped_reason or Reason.CONNECTION,
                f"OMS unreachable, not polled this round: {outcome.tripped_message}",
            )
        self._set_reachable(target, outcome)

    def _due(self, target: Target, project_id: str, now: float) -> bool:
        entry = target.not_found.get(project_id)
        return entry is None or now >= entry[1]

    async def _poll_project(
        self, target: Target, project_id: str, deadline: float, outcome: _RoundOutcome
    ) -> None:
        if outcome.tripped_reason is not None:
            self._record_failure(
                target,
                project_id,
                outcome.tripped_reason,
                f"OMS unreachable, not polled this round: {outcome.tripped_message}",
            )
            return
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                progress = await target.client.fetch_progress(project_id)
            except OmsError as error:
                self._count_failure(target, error, outcome)
                if (
                    is_transient(error)
                    and attempt < MAX_ATTEMPTS
                    and outcome.tripped_reason is None
                ):
                    delay = RETRY_BASE_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                    # Retry only if the retry, timing out too, still ends within the round.
                    if time.monotonic() + delay + target.request_timeout_seconds < deadline:
                        await asyncio.sleep(delay)
                        continue
                self._on_error(target, project_id, error)
                return
            except Exception as exc:  # one project's bug must not stop the poller
                log.exception("unexpected error polling project %s", project_id)
                self._record_failure(
                    target, project_id, Reason.INVALID, f"internal error: {type(exc).__name__}"
                )
                return
            outcome.answered = True
            outcome.transport_failures = 0
            target.not_found.pop(project_id, None)
            before = self.store.get(target.name, project_id)
            if target.step_details:
                progress = await self._with_steps(target, progress, before)
            was_down = before is not None and before.last_error_reason is not None
            state = self.store.record_success(target.name, project_id, progress, now=self._clock())
            if state is not None and was_down:
                log.info(
                    "project %s is up",
                    project_id,
                    extra={"oms": target.name, "project_id": project_id},
                )
            return

    async def _with_steps(
        self, target: Target, progress: ProjectProgress, before: ProjectState | None
    ) -> ProjectProgress:
        """Add per-step details; a finished project's steps are fetched once, then reused."""
        known = before.progress.steps if before and before.progress else None
        if known is not None and progress.status in _SETTLED:
            return replace(progress, steps=known)
        try:
            steps = await target.client.fetch_steps(progress.project_id)
        except OmsError as error:
            log.debug("no step details for %s: %s", progress.project_id, error)
            steps = known
        return progress if steps is None else replace(progress, steps=steps)

    def _count_failure(self, target: Target, error: OmsError, outcome: _RoundOutcome) -> None:
        """Trip the round's breaker after a few failures with no good answer from OMS."""
        if error.reason in _ANSWERED:
            outcome.answered = True
            outcome.transport_failures = 0
        elif not outcome.answered:
            outcome.transport_failures += 1
            if outcome.transport_failures >= _TRIP_AFTER or not target.reachable:
                outcome.tripped_reason = error.reason
                outcome.tripped_message = str(error)

    def _on_error(self, target: Target, project_id: str, error: OmsError) -> None:
        if error.reason == Reason.NOT_FOUND:
            count = target.not_found.get(project_id, (0, 0.0))[0] + 1
            rounds = min(2 ** (count - 1), _MAX_NOT_FOUND_BACKOFF_ROUNDS)
            next_poll = self._clock() + rounds * self.interval_seconds - 0.001
            target.not_found[project_id] = (count, next_poll)
        self._record_failure(target, project_id, error.reason, str(error))

    def _record_failure(
        self, target: Target, project_id: str, reason: Reason, message: str
    ) -> None:
        before = self.store.get(target.name, project_id)
        previous = _describe(before)
        state = self.store.record_failure(target.name, project_id, reason, message)
        if state is not None and previous != (False, reason):
            log.warning(
                "project %s is down: %s: %s",
                project_id,
                reason.value,
                message,
                extra={"oms": target.name, "project_id": project_id, "reason": reason.value},
            )

    def _set_reachable(self, target: Target, outcome: _RoundOutcome) -> None:
        reachable = outcome.answered or outcome.tripped_reason is None
        if outcome.answered:
            self.metrics.oms_up.labels(target.name).set(1)
        elif outcome.transport_failures or outcome.tripped_reason is not None:
            self.metrics.oms_up.labels(target.name).set(0)
        if reachable != target.reachable:
            if reachable:
                log.info("OMS %s is reachable again", target.name, extra={"oms": target.name})
            else:
                log.warning(
                    "OMS %s is unreachable: %s; probing once per round",
                    target.name,
                    outcome.tripped_message,
                    extra={"oms": target.name},
                )
        target.reachable = reachable


def _describe(state: ProjectState | None) -> tuple[bool, Reason | None] | None:
    if state is None:
        return None
    return state.up, state.last_error_reason if not state.up else None
