"""Own the schedule: poll every project once per interval, bounded, never overlapping.

Each result lands in the store as soon as it arrives, so a hanging project delays no
other project's values. A whole OMS that stops answering is probed once per round
instead of hammered with a request per project. A project is the unit of failure:
whatever goes wrong while handling one marks that project down and nothing else.

Configuration (``TargetConfig``, frozen) and what the poller learns about an OMS
(``TargetState``) are kept apart; the state survives reloads, keyed by the OMS's name.
Clocks come from the caller, so tests advance time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from oms_exporter.config import TargetConfig
from oms_exporter.model import (
    SETTLED_STATUSES,
    FullVerification,
    Kind,
    ProjectProgress,
    Reason,
    Step,
)
from oms_exporter.oms.client import DiscoveryUnavailable, OmsClient
from oms_exporter.oms.errors import (
    OmsActionUnavailable,
    OmsApiError,
    OmsError,
    OmsHttpError,
    OmsProjectNotFound,
    is_transient,
)
from oms_exporter.readiness import VERIFY_STEP, verification_settled, verifier
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.sharding import Shard
from oms_exporter.store import ProjectState, Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 3
RETRY_BASE_SECONDS: Final = 0.2
# Consecutive transport failures with no answer that mark an OMS unreachable mid-round.
_TRIP_AFTER: Final = 3
# A project OMS says does not exist is polled less and less often, but at least every
# 5 minutes: OMSProjectNotFound looks at increase(...[15m]) and must not see a gap.
MAX_NOT_FOUND_BACKOFF_SECONDS: Final = 300.0
# A step in this state is moving: its details change from round to round.
_MOVING_STEP: Final = "RUNNING"
# Steps that, once RUNNING, run until an operator acts (the switchover) or for the life of
# the project: their RUNNING is steady state, and what changes shows in the progress answer
# (status, current step, checkpoint). ODC's OmsStepName spellings, 4.x and 3.3.
_ENDLESS_STEPS: Final = frozenset(
    {
        "TRANSFER_APP_SWITCH",
        "APP_SWITCH",
        "TRANSFER_INCR_LOG_PULL",
        "INCR_LOG_PULL",
        "SYNC_INCR_LOG_PULL",
        "INCR_VERIFIER",
        "REVERSE_INCR_TRANSFER",
        "REVERSE_INCR_SYNC",
    }
)
# A sync project's incremental step runs for its life too; a migration's is watched until
# MONITORING, which cut-over readiness waits for.
_SYNC_INCR_STEPS: Final = frozenset({"INCR_TRANSFER", "INCR_SYNC", "CONNECTOR_INCR_SYNC"})
# From this many configured projects not yet listed, their details and steps are read from
# ListProjects pages (150 a page) rather than asked one by one (2 requests a project).
PREFETCH_MIN_PROJECTS: Final = 150
# An optional Action an OMS refused is asked again after this many rounds.
ACTION_PROBE_EVERY_ROUNDS: Final = 10
_STEPS_ACTION: Final = "DescribeProjectSteps"
_VERIFY_ACTION: Final = "ListProjectFullVerifyResult"

Clock = Callable[[], float]


def not_found_backoff_rounds(count: int, interval_seconds: float) -> int:
    """Rounds to skip after the ``count``-th consecutive "not found": 1, 2, 4, … capped."""
    cap = max(1, math.floor(MAX_NOT_FOUND_BACKOFF_SECONDS / interval_seconds))
    rounds: int = 2 ** min(count - 1, 30)
    return min(rounds, cap)


@dataclass(slots=True)
class TargetState:
    """What the poller learned about one OMS; kept across reloads by the OMS's name."""

    reachable: bool = True
    discovered_ids: list[str] | None = None
    next_discovery: float = 0.0  # monotonic time of the next ListProjects
    discovery_ok: bool = True
    discovery_unavailable: bool = False  # a 3.3 OMS: no ListProjects
    project_ids: list[str] = field(default_factory=list)
    # project_id -> (consecutive not-found polls, earliest next poll, wall clock)
    not_found: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Removed by a reload: results of a round still in flight are dropped, not written.
    retired: bool = False
    # project_id -> the round (Poller.rounds) its steps, or its progress, were last asked
    steps_round: dict[str, int] = field(default_factory=dict)
    progress_round: dict[str, int] = field(default_factory=dict)
    # optional Action -> the round this OMS last refused it (see _action_refused)
    refused_actions: dict[str, int] = field(default_factory=dict)
    # Projects whose verification result was fetched after FULL_VERIFIER settled: final.
    verification_final: set[str] = field(default_factory=set)
    # Steps the last ListProjects carried, used instead of asking DescribeProjectSteps in
    # the round of that listing (listed_round) only; taken out as used.
    listed_steps: dict[str, tuple[Step, ...]] = field(default_factory=dict)
    listed_round: int = -1
    # Configured projects a prefetch listing has looked for (found or not).
    prefetched: set[str] = field(default_factory=set)

    def forget(self, project_id: str) -> None:
        """Drop what was kept for a project no longer polled."""
        self.not_found.pop(project_id, None)
        self.steps_round.pop(project_id, None)
        self.progress_round.pop(project_id, None)
        self.verification_final.discard(project_id)
        self.listed_steps.pop(project_id, None)
        self.prefetched.discard(project_id)


@dataclass(frozen=True, slots=True)
class Target:
    """One OMS: its configuration, the client to reach it, and what was learned about it."""

    config: TargetConfig
    client: OmsClient
    state: TargetState

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def discovers(self) -> bool:
        return self.config.discovery is not None and not self.state.discovery_unavailable


@dataclass(slots=True)
class _RoundOutcome:
    answered: bool = False
    transport_failures: int = 0
    tripped_reason: Reason | None = None
    tripped_message: str = ""


class Poller:
    """Run poll rounds forever; the runtime supervises ``run`` and reads its progress."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: SelfMetrics,
        interval_seconds: float,
        request_timeout_seconds: float = 10.0,
        max_concurrency: int = 8,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self.max_concurrency = max_concurrency
        self.shard = Shard()
        # Ask OMS only what can have changed: steps of a project in steady incremental
        # sync, and the progress of a FINISHED/RELEASED/DELETED one, every N rounds.
        self.steady_steps_every_rounds = 10
        self.settled_poll_every_rounds = 10
        self.targets: dict[str, Target] = {}
        self.first_round_done = asyncio.Event()
        # Set when a round ends; whoever waits for it clears it (runtime: collector.prepare).
        self.round_ended = asyncio.Event()
        self.rounds = 0
        # Monotonic time the last round ended; None until one has.
        self.last_round_end: float | None = None
        # Monotonic time a round ended or a project's poll ended: a long round that keeps
        # polling projects is alive, a wedged one is not.
        self.last_progress: float | None = None
        # Set while no round runs: a session a reload replaced is closed once it is.
        self.idle = asyncio.Event()
        self.idle.set()
        self._clock = clock
        self._monotonic = monotonic

    def configure(
        self,
        targets: Sequence[tuple[TargetConfig, OmsClient]],
        *,
        interval_seconds: float,
        request_timeout_seconds: float,
        max_concurrency: int,
        shard: Shard,
        steady_steps_every_rounds: int = 10,
        settled_poll_every_rounds: int = 10,
    ) -> None:
        """Replace what is polled; state is kept per OMS name, the store follows."""
        self.steady_steps_every_rounds = steady_steps_every_rounds
        self.settled_poll_every_rounds = settled_poll_every_rounds
        self.interval_seconds = interval_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self.max_concurrency = max_concurrency
        self.shard = shard
        wanted = {config.name for config, _client in targets}
        for name, removed in self.targets.items():
            if name not in wanted:
                removed.state.retired = True
                self.store.remove_oms(name)
                self.metrics.forget_oms(name)
        new: dict[str, Target] = {}
        for config, client in targets:
            old = self.targets.get(config.name)
            state = self._carry_over(old, config, client) if old is not None else TargetState()
            target = Target(config=config, client=client, state=state)
            new[config.name] = target
            self._sync_store(target)
        self.targets = new

    def _carry_over(self, old: Target, config: TargetConfig, client: OmsClient) -> TargetState:
        """Keep what still holds for the new configuration of the same OMS."""
        state = old.state
        same_client = old.client is client
        if not same_client:
            # New address or credentials: what this OMS said before proves nothing now.
            state.not_found.clear()
            state.reachable = True
            state.discovery_unavailable = False
            state.refused_actions.clear()
            state.verification_final.clear()
        if config.discovery is None:
            state.discovered_ids = None
        elif not (same_client and config.discovery == old.config.discovery):
            # Keep serving the last list until the new discovery ran, so a reload does not
            # make discovered projects blink out for a round; but run it at the next round.
            state.next_discovery = 0.0
        return state

    def _sync_store(self, target: Target) -> None:
        """Static and discovered IDs, merged, in this replica's shard, become the store's."""
        state = target.state
        if state.retired:  # a discovery that finished after its OMS was removed
            return
        merged = dict.fromkeys([*target.config.project_ids, *(state.discovered_ids or [])])
        state.project_ids = [pid for pid in merged if self.shard.owns(target.name, pid)]
        for project_id in self.store.set_projects(target.name, state.project_ids):
            target.client.forget(project_id)
            state.forget(project_id)
        self.metrics.projects.labels(target.name).set(len(state.project_ids))

    async def run(self) -> None:
        """Poll until cancelled; a round starts every interval or when the last one ends."""
        while True:
            started = self._monotonic()
            await self.poll_round()
            elapsed = self._monotonic() - started
            await asyncio.sleep(max(0.0, self.interval_seconds - elapsed))

    async def poll_round(self) -> None:
        """Poll every due project of every OMS once."""
        started = self._monotonic()
        deadline = started + self.interval_seconds
        targets = list(self.targets.values())
        self.idle.clear()
        try:
            await asyncio.gather(*(self._poll_target(target, deadline) for target in targets))
        finally:
            self.idle.set()
        self.last_round_end = self.last_progress = self._monotonic()
        self.metrics.round_duration.set(self.last_round_end - started)
        self.metrics.round_timestamp.set(self._clock())
        self.metrics.rounds.inc()
        self.rounds += 1
        self.first_round_done.set()
        self.round_ended.set()

    async def _discover(self, target: Target) -> None:
        """Refresh the discovered IDs; on any failure keep the last list and retry next round."""
        state = target.state
        assert target.config.discovery is not None
        try:
            projects = await target.client.list_projects(target.config.discovery)
        except DiscoveryUnavailable as exc:
            log.warning("discovery is off for OMS %s: %s", target.name, exc,
                        extra={"oms": target.name})  # fmt: skip
            state.discovery_unavailable = True
            return
        except Exception as exc:  # any failure keeps the last list
            reason = exc.reason if isinstance(exc, OmsError) else Reason.INVALID
            message = str(exc) if isinstance(exc, OmsError) else f"internal error: {_name(exc)}"
            if not state.retired:
                self.metrics.discovery_errors.labels(target.name, reason.value).inc()
            if state.discovery_ok:
                log.warning("discovery failed on OMS %s, keeping the last project list: %s",
                            target.name, message, extra={"oms": target.name},
                            exc_info=_debug_traceback(exc))  # fmt: skip
            state.discovery_ok = False
            return
        if not state.discovery_ok:
            log.info("discovery works again on OMS %s", target.name, extra={"oms": target.name})
        state.discovery_ok = True
        state.discovered_ids = [project.details.project_id for project in projects]
        state.listed_steps = {
            project.details.project_id: project.steps
            for project in projects
            if project.steps is not None
        }
        state.listed_round = self.rounds
        state.next_discovery = self._monotonic() + target.config.discovery_interval_seconds
        if not state.retired:
            self.metrics.discovered.labels(target.name).set(len(projects))
            self.metrics.discovery_timestamp.labels(target.name).set(self._clock())
        self._sync_store(target)

    async def _poll_target(self, target: Target, deadline: float) -> None:
        state = target.state
        if target.discovers and self._monotonic() >= state.next_discovery:
            await self._discover(target)
        now = self._clock()
        due = deque(pid for pid in state.project_ids if self._due(target, pid, now))
        if not due:
            return
        outcome = _RoundOutcome()
        if not state.reachable:
            # One probe while the OMS is down; the rest wait for it.
            await self._poll_project(target, due.popleft(), deadline, outcome)
        if state.reachable or outcome.answered:
            await self._poll_all(target, due, deadline, outcome)
        for project_id in due:  # left unpolled because the OMS is unreachable
            self._record_failure(
                target,
                project_id,
                outcome.tripped_reason or Reason.CONNECTION,
                f"OMS unreachable, not polled this round: {outcome.tripped_message}",
            )
        self._set_reachable(target, outcome)

    async def _poll_all(
        self, target: Target, due: deque[str], deadline: float, outcome: _RoundOutcome
    ) -> None:
        """Poll every project in ``due`` (emptying it), ``max_concurrency`` at a time.

        Many new configured projects are first looked for in ListProjects pages (see
        _prefetch): each is polled once the page listing it has arrived, or once the
        listing ends, while the other projects are polled meanwhile.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        workers = min(self.max_concurrency, len(due))
        waiting = self._prefetch_set(target, due)
        while due:
            project_id = due.popleft()
            if project_id not in waiting:
                queue.put_nowait(project_id)
        listing = None
        if waiting:
            listing = asyncio.create_task(self._prefetch(target, waiting, queue, workers))
        else:
            for _ in range(workers):
                queue.put_nowait(None)

        async def worker() -> None:
            while (project_id := await queue.get()) is not None:
                await self._poll_project(target, project_id, deadline, outcome)

        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            if listing is not None:
                listing.cancel()  # done by now, unless the round itself is being cancelled

    def _prefetch_set(self, target: Target, due: deque[str]) -> dict[str, None]:
        """The due projects to look for in ListProjects first, in order; often none.

        Only for configured projects (discovery lists them anyway), only when at least
        PREFETCH_MIN_PROJECTS are new: at 10,000 a first round would otherwise cost
        30,000 requests (progress, DescribeProject, steps); with it, about 10,070.
        """
        state = target.state
        if target.discovers:
            return {}
        new = [pid for pid in state.project_ids if pid not in state.prefetched]
        if len(new) < PREFETCH_MIN_PROJECTS:
            return {}
        state.prefetched.update(new)
        due_now = set(due)
        return {pid: None for pid in new if pid in due_now}

    async def _prefetch(
        self,
        target: Target,
        waiting: dict[str, None],
        queue: asyncio.Queue[str | None],
        workers: int,
    ) -> None:
        """List ``waiting``'s projects, queueing each for its poll as its page arrives.

        A failure costs nothing but the attempt: the projects not listed are queued all
        the same, and described one by one, as without a listing.
        """
        state = target.state
        state.listed_steps = {}
        state.listed_round = self.rounds

        def listed(page: dict[str, tuple[Step, ...] | None]) -> None:
            for project_id, steps in page.items():
                if steps is not None:
                    state.listed_steps[project_id] = steps
                if project_id in waiting:
                    del waiting[project_id]
                    queue.put_nowait(project_id)

        try:
            await target.client.prefetch(list(waiting), listed)
        except Exception as exc:  # any failure: describe them one by one instead
            log.info("could not list the projects of OMS %s, asking for each: %s",
                     target.name, exc if isinstance(exc, OmsError) else _name(exc),
                     extra={"oms": target.name})  # fmt: skip
        finally:
            for project_id in waiting:
                queue.put_nowait(project_id)
            waiting.clear()
            for _ in range(workers):
                queue.put_nowait(None)

    def _due(self, target: Target, project_id: str, now: float) -> bool:
        """Whether to poll a project this round: not while backing off, seldom if settled."""
        entry = target.state.not_found.get(project_id)
        if entry is not None:
            return now >= entry[1]
        known = self.store.get(target.name, project_id)
        if known is None or not known.up or known.progress is None or not target.state.reachable:
            return True  # while the OMS is down, settled projects follow it down and back
        if known.progress.status not in SETTLED_STATUSES:
            return True
        last = target.state.progress_round.get(project_id)
        return last is None or self.rounds - last >= self.settled_poll_every_rounds

    async def _poll_project(
        self, target: Target, project_id: str, deadline: float, outcome: _RoundOutcome
    ) -> None:
        """Poll one project; any exception is this project's failure, never the round's."""
        if outcome.tripped_reason is not None:
            self._record_failure(
                target,
                project_id,
                outcome.tripped_reason,
                f"OMS unreachable, not polled this round: {outcome.tripped_message}",
            )
            return
        try:
            await self._fetch_and_record(target, project_id, deadline, outcome)
        except Exception as exc:  # whatever it is, it is this project's failure alone
            self._record_failure(
                target,
                project_id,
                Reason.INVALID,
                f"internal error: {_name(exc)}",
                exc_info=_debug_traceback(exc),
            )
        finally:
            self.last_progress = self._monotonic()

    async def _fetch_and_record(
        self, target: Target, project_id: str, deadline: float, outcome: _RoundOutcome
    ) -> None:
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
                    if self._monotonic() + delay + self.request_timeout_seconds < deadline:
                        await asyncio.sleep(delay)
                        continue
                self._on_error(target, project_id, error)
                return
            outcome.answered = True
            outcome.transport_failures = 0
            target.state.not_found.pop(project_id, None)
            target.state.progress_round[project_id] = self.rounds
            before = self.store.get(target.name, project_id)
            if target.config.step_details:
                steps = await self._steps(target, progress, before)
                verification = await self._verification(target, progress, steps, before)
                progress = progress.completed(steps, verification)
            was_down = before is not None and before.last_error_reason is not None
            state = self.store.record_success(target.name, project_id, progress, now=self._clock())
            if state is not None and was_down:
                log.info(
                    "project %s is up",
                    project_id,
                    extra={"oms": target.name, "project_id": project_id},
                )
            return

    async def _steps(
        self, target: Target, progress: ProjectProgress, before: ProjectState | None
    ) -> tuple[Step, ...] | None:
        """Per-step details for this answer, asking OMS only when they can have changed.

        Asked while a step runs or when the progress answer moved; in steady incremental
        sync (the checkpoint is in the progress answer already) every N rounds; for a
        settled project once. Never in the round of a ListProjects that carried them.
        """
        listed = target.state.listed_steps.pop(progress.project_id, None)
        if listed is not None and target.state.listed_round == self.rounds:
            target.state.steps_round[progress.project_id] = self.rounds
            return listed
        known_progress = before.progress if before is not None else None
        known = known_progress.steps if known_progress is not None else None
        if known is not None and known_progress is not None:
            if progress.status in SETTLED_STATUSES:
                return known
            last = target.state.steps_round.get(progress.project_id)
            steady = (
                not _moved(known_progress, progress)
                and not _steps_move(progress.kind, known)
                and last is not None
                and self.rounds - last < self.steady_steps_every_rounds
            )
            if steady:
                return known
        if not self._may_ask(target, _STEPS_ACTION):
            return known
        try:
            steps = await target.client.fetch_steps(progress.project_id)
        except OmsError as error:
            log.debug("no step details for %s: %s", progress.project_id, error)
            if _action_refused(error):
                self._refuse_action(target, _STEPS_ACTION, error)
            return known
        target.state.steps_round[progress.project_id] = self.rounds
        self._allow_action(target, _STEPS_ACTION)
        return steps

    async def _verification(
        self,
        target: Target,
        progress: ProjectProgress,
        steps: tuple[Step, ...] | None,
        before: ProjectState | None,
    ) -> FullVerification | None:
        """The full verification's result, asking OMS only while it can change.

        Asked while FULL_VERIFIER has started and not settled, and once more when it
        settles; otherwise the last result is kept. Nothing that goes wrong here marks the
        project down: the result is extra, the progress answer is what says it is up.
        """
        state = target.state
        project_id = progress.project_id
        known_progress = before.progress if before is not None else None
        known = known_progress.verification if known_progress is not None else None
        if steps is None:  # no step details (yet): nothing says what changed
            return known
        step = verifier(steps)
        if step is None or step.status == "INIT":  # nothing verified: no result to ask for
            state.verification_final.discard(project_id)
            return None if step is None else known
        settled = verification_settled(step)
        if not settled:
            state.verification_final.discard(project_id)
        elif project_id in state.verification_final:
            return known
        if not self._may_ask(target, _VERIFY_ACTION):
            return known
        try:
            result = await target.client.fetch_verification(project_id)
        except Exception as exc:  # whatever it is, the project stays up with the last result
            log.debug("no verification result for %s: %s", project_id, exc,
                      exc_info=_debug_traceback(exc))  # fmt: skip
            if isinstance(exc, OmsError) and _action_refused(exc):
                self._refuse_action(target, _VERIFY_ACTION, exc)
            return known
        self._allow_action(target, _VERIFY_ACTION)
        if result is None:
            return known
        if settled:
            state.verification_final.add(project_id)
        return result

    def _may_ask(self, target: Target, action: str) -> bool:
        """An Action this OMS refused is asked again only every few rounds."""
        refused = target.state.refused_actions.get(action)
        return refused is None or self.rounds - refused >= ACTION_PROBE_EVERY_ROUNDS

    def _refuse_action(self, target: Target, action: str, error: OmsError) -> None:
        state = target.state
        if action not in state.refused_actions:
            log.warning(
                "OMS %s refuses %s (%s): not asked again for %d rounds; projects stay up",
                target.name, action, error, ACTION_PROBE_EVERY_ROUNDS,
                extra={"oms": target.name, "action": action},
            )  # fmt: skip
        state.refused_actions[action] = self.rounds
        if not state.retired:
            self.metrics.action_available.labels(target.name, action).set(0)

    def _allow_action(self, target: Target, action: str) -> None:
        state = target.state
        if state.refused_actions.pop(action, None) is not None:
            log.info("OMS %s answers %s again", target.name, action, extra={"oms": target.name})
        if not state.retired:
            self.metrics.action_available.labels(target.name, action).set(1)

    def _count_failure(self, target: Target, error: OmsError, outcome: _RoundOutcome) -> None:
        """Trip the round's breaker after a few transport failures with no answer from OMS.

        Only transport failures count (connection, timeout, 5xx and 429 from OMS or its
        proxy): a bad answer for one project is an answer, and says the OMS is there.
        """
        if not is_transient(error):
            outcome.answered = True
            outcome.transport_failures = 0
        elif not outcome.answered:
            outcome.transport_failures += 1
            if outcome.transport_failures >= _TRIP_AFTER or not target.state.reachable:
                outcome.tripped_reason = error.reason
                outcome.tripped_message = str(error)

    def _on_error(self, target: Target, project_id: str, error: OmsError) -> None:
        if error.reason == Reason.NOT_FOUND:
            count = target.state.not_found.get(project_id, (0, 0.0))[0] + 1
            rounds = not_found_backoff_rounds(count, self.interval_seconds)
            next_poll = self._clock() + rounds * self.interval_seconds - 0.001
            target.state.not_found[project_id] = (count, next_poll)
        self._record_failure(target, project_id, error.reason, str(error))

    def _record_failure(
        self,
        target: Target,
        project_id: str,
        reason: Reason,
        message: str,
        *,
        exc_info: BaseException | None = None,
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
                exc_info=exc_info,
            )

    def _set_reachable(self, target: Target, outcome: _RoundOutcome) -> None:
        state = target.state
        if state.retired:  # removed while this round ran: write no series for it
            return
        reachable = outcome.answered or outcome.tripped_reason is None
        if outcome.answered:
            self.metrics.oms_up.labels(target.name).set(1)
        elif outcome.transport_failures or outcome.tripped_reason is not None:
            self.metrics.oms_up.labels(target.name).set(0)
        if reachable != state.reachable:
            if reachable:
                log.info("OMS %s is reachable again", target.name, extra={"oms": target.name})
            else:
                log.warning(
                    "OMS %s is unreachable: %s; probing once per round",
                    target.name,
                    outcome.tripped_message,
                    extra={"oms": target.name},
                )
        state.reachable = reachable


def _action_refused(error: OmsError) -> bool:
    """An answer that says "not this Action", rather than "not this project" or "not now"."""
    if isinstance(error, OmsProjectNotFound) or is_transient(error):
        return False
    if isinstance(error, OmsActionUnavailable):
        return True
    # PARAM_ERROR is what an OMS without the Action is seen to answer; another business
    # error (CM service unavailable, ...) is a passing state of that project, not "never".
    if isinstance(error, OmsApiError):
        return error.code == "PARAM_ERROR"
    return isinstance(error, OmsHttpError) and error.status in (400, 404, 405, 501)


def _steps_move(kind: Kind, steps: tuple[Step, ...]) -> bool:
    """Whether a step is RUNNING towards an end: its details then change every round.

    A FULL_VERIFIER at 100 % is done even while RUNNING (ODC: OMS may leave it so), as
    cut-over readiness reads it; asked every round, it cost a request per poll for good.
    """
    endless = _ENDLESS_STEPS | _SYNC_INCR_STEPS if kind == Kind.SYNC else _ENDLESS_STEPS
    return any(
        step.status == _MOVING_STEP
        and step.name not in endless
        and not (step.name == VERIFY_STEP and verification_settled(step))
        for step in steps
    )


def _moved(old: ProjectProgress, new: ProjectProgress) -> bool:
    """Whether the progress answer says more than "the checkpoint moved"."""
    return (
        old.status != new.status
        or old.current_step != new.current_step
        or old.struct_progress_ratio != new.struct_progress_ratio
        or old.full_progress_ratio != new.full_progress_ratio
        or old.features != new.features
    )


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _debug_traceback(exc: BaseException) -> BaseException | None:
    """A traceback only at debug level: one line per state change otherwise."""
    return exc if log.isEnabledFor(logging.DEBUG) and not isinstance(exc, OmsError) else None


def _describe(state: ProjectState | None) -> tuple[bool, Reason | None] | None:
    if state is None or not state.polled:
        return None
    return state.up, state.last_error_reason if not state.up else None
