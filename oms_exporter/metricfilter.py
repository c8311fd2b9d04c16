"""Which metric families /metrics publishes: kube-state-metrics' allow and deny lists.

Each list holds regular expressions matched against the whole name Prometheus shows
(counters with their ``_total``). Applied before rendering, so a denied family costs
neither memory nor scrape time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_PASS_ALL: Final = re.compile(r".*")


@dataclass(frozen=True, slots=True)
class MetricFilter:
    """An allow list or a deny list (never both), as anchored regular expressions."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    _allow: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _deny: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.allow and self.deny:
            raise ValueError("set an allow list or a deny list, not both")
        allow = re.compile("|".join(f"(?:{p})" for p in self.allow)) if self.allow else _PASS_ALL
        deny = re.compile("|".join(f"(?:{p})" for p in self.deny)) if self.deny else None
        object.__setattr__(self, "_allow", allow)
        object.__setattr__(self, "_deny", deny)

    def allows(self, name: str) -> bool:
        """Whether the family shown as ``name`` (``..._total`` for counters) is published."""
        if self._allow.fullmatch(name) is None:
            return False
        return self._deny is None or self._deny.fullmatch(name) is None

    def allows_family(self, name: str, metric_type: str) -> bool:
        shown = f"{name}_total" if metric_type == "counter" else name
        return self.allows(shown)


def check_patterns(patterns: list[str]) -> list[str]:
    """Refuse a pattern that is not a regular expression, naming it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc.msg}") from None
    return patterns


class FilteredCollector(Collector):
    """The families of ``source`` that ``metric_filter`` allows, for prometheus-client."""

    def __init__(self, source: Collector, metric_filter: MetricFilter) -> None:
        self._source = source
        self._filter = metric_filter

    def collect(self) -> list[Metric]:
        return [
            metric
            for metric in self._source.collect()
            if self._filter.allows_family(metric.name, metric.type)
        ]
