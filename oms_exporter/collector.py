"""Build the per-project part of /metrics from the store.

Each project's lines are rendered when its state changes and kept; a scrape joins them
family by family and computes only the lag, which depends on the time of the scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from oms_exporter.families import (
    LAG_FAMILY_NAME,
    LAG_HELP,
    PROJECT_FAMILIES,
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
from oms_exporter.store import ProjectState, Store

_LAG = Family(LAG_FAMILY_NAME, LAG_HELP, "gauge", lambda _state: ())
_SKEW = Family(SKEW_FAMILY_NAME, SKEW_HELP, "gauge", lambda _state: ())


@dataclass(frozen=True, slots=True)
class _Rendered:
    version: int
    chunks: tuple[str, ...]
    # (the lag line up to its value, checkpoint seconds) per numeric checkpoint
    lags: tuple[tuple[str, float], ...]


def _render(state: ProjectState) -> _Rendered:
    labels = base_labels(state)
    chunks = tuple(render_family(family, state, labels) for family in PROJECT_FAMILIES)
    lags: list[tuple[str, float]] = []
    if state.progress is not None:
        for point in state.progress.checkpoints:
            if point.seconds is not None:
                prefix = f"{LAG_FAMILY_NAME}{{{labels}{label('direction', point.direction)}}} "
                lags.append((prefix, point.seconds))
    return _Rendered(state.version, chunks, tuple(lags))


class ProjectCollector:
    """Render the store as exposition text, reusing each project's lines until it changes."""

    def __init__(
        self,
        store: Store,
        *,
        stale_after_seconds: float,
        poll_interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[tuple[str, str], _Rendered] = {}
        self.configure(
            stale_after_seconds=stale_after_seconds, poll_interval_seconds=poll_interval_seconds
        )

    def configure(self, *, stale_after_seconds: float, poll_interval_seconds: float) -> None:
        self._stale_after = stale_after_seconds
        self._poll_note = f"Polled every {poll_interval_seconds:g} seconds."

    def render(self, *, openmetrics: bool = False) -> str:
        now = self._clock()
        per_family: list[list[str]] = [[] for _ in PROJECT_FAMILIES]
        lag_lines: list[str] = []
        ahead: dict[str, float] = {}
        cache: dict[tuple[str, str], _Rendered] = {}
        for state in self._store:
            key = (state.oms, state.project_id)
            rendered = self._cache.get(key)
            if rendered is None or rendered.version != state.version:
                rendered = _render(state)
            cache[key] = rendered
            ahead.setdefault(state.oms, 0.0)
            stale = state.is_stale(now, self._stale_after)
            for index, family in enumerate(PROJECT_FAMILIES):
                chunk = rendered.chunks[index]
                if chunk and not (stale and family.hidden_when_stale):
                    per_family[index].append(chunk)
            if stale:
                continue
            for prefix, seconds in rendered.lags:
                lag = now - seconds
                if lag < 0:
                    ahead[state.oms] = max(ahead[state.oms], -lag)
                    lag = 0.0
                lag_lines.append(prefix + format_value(lag) + "\n")
        self._cache = cache

        out: list[str] = []
        for family, chunks in zip(PROJECT_FAMILIES, per_family, strict=True):
            if chunks:
                out.append(header(family, openmetrics=openmetrics, poll_note=self._poll_note))
                out.extend(chunks)
        if lag_lines:
            out.append(header(_LAG, openmetrics=openmetrics, poll_note=self._poll_note))
            out.extend(lag_lines)
        if ahead:
            out.append(header(_SKEW, openmetrics=openmetrics, poll_note=self._poll_note))
            out.extend(
                f'{SKEW_FAMILY_NAME}{{oms="{escape_label(oms)}"}} {format_value(seconds)}\n'
                for oms, seconds in ahead.items()
            )
        return "".join(out)
