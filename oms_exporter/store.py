"""The latest known state of every polled project: what the poller wrote, what /metrics reads.

Plain data only; rendering is the collector's job. Every change is announced to the
listeners (the collector), so a project is re-rendered when it changes, not per scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from oms_exporter.model import ProjectProgress, Reason


@dataclass(slots=True)
class ProjectState:
    oms: str
    project_id: str
    progress: ProjectProgress | None = None
    up: bool = False
    last_success_seconds: float | None = None
    last_error_reason: Reason | None = None
    last_error_message: str = ""
    errors: dict[Reason, int] = field(default_factory=dict)

    @property
    def polled(self) -> bool:
        """Whether a poll has ended for this project yet; before that, nothing is known."""
        return self.last_success_seconds is not None or bool(self.errors)


Key = tuple[str, str]
# Told (key, state) after every change; state is None when the project was removed.
Listener = Callable[[Key, "ProjectState | None"], None]


class Store:
    """Projects in the order they were configured, keyed by (oms, project_id)."""

    def __init__(self) -> None:
        self._states: dict[Key, ProjectState] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)
        for key, state in self._states.items():
            listener(key, state)

    def _changed(self, key: Key, state: ProjectState | None) -> None:
        for listener in self._listeners:
            listener(key, state)

    def __iter__(self) -> Iterator[ProjectState]:
        return iter(list(self._states.values()))

    def get(self, oms: str, project_id: str) -> ProjectState | None:
        return self._states.get((oms, project_id))

    def set_projects(self, oms: str, project_ids: Iterable[str]) -> list[str]:
        """Make ``oms``'s projects exactly these; return the ids that were removed."""
        wanted = list(dict.fromkeys(project_ids))
        keep = set(wanted)
        removed = [key[1] for key in self._states if key[0] == oms and key[1] not in keep]
        for project_id in removed:
            del self._states[(oms, project_id)]
            self._changed((oms, project_id), None)
        for project_id in wanted:
            key = (oms, project_id)
            if key not in self._states:
                self._states[key] = state = ProjectState(oms, project_id)
                self._changed(key, state)
        return removed

    def remove_oms(self, oms: str) -> None:
        for key in [key for key in self._states if key[0] == oms]:
            del self._states[key]
            self._changed(key, None)

    def record_success(
        self, oms: str, project_id: str, progress: ProjectProgress, *, now: float
    ) -> ProjectState | None:
        state = self._states.get((oms, project_id))
        if state is None:  # removed by a reload while its poll was in flight
            return None
        state.progress = progress
        state.up = True
        state.last_success_seconds = now
        state.last_error_reason = None
        state.last_error_message = ""
        self._changed((oms, project_id), state)
        return state

    def record_failure(
        self, oms: str, project_id: str, reason: Reason, message: str
    ) -> ProjectState | None:
        state = self._states.get((oms, project_id))
        if state is None:
            return None
        state.up = False
        state.errors[reason] = state.errors.get(reason, 0) + 1
        state.last_error_reason = reason
        state.last_error_message = message
        self._changed((oms, project_id), state)
        return state
