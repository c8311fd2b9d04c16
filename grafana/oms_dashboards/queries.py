"""PromQL selectors and Prometheus targets that always carry the dashboard variables."""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# Every panel, target and query variable picks its Prometheus through `$datasource`, so
# the same JSON works provisioned and imported (no __inputs).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

Scope = Literal["job", "oms", "project"]
_SCOPE_MATCHERS: dict[Scope, tuple[str, ...]] = {
    "job": ('job=~"$job"',),
    "oms": ('job=~"$job"', 'oms=~"$oms"'),
    "project": ('job=~"$job"', 'oms=~"$oms"', 'project_id=~"$project"'),
}


def series(metric: str, *extra: str, scope: Scope = "project") -> str:
    """`metric{...}` filtered on the variables its labels allow, then `extra` matchers.

    The scope follows the labels the series has: per-project series carry oms and
    project_id, per-OMS ones only oms, the exporter's own ones neither.
    """
    return f"{metric}{{{', '.join((*_SCOPE_MATCHERS[scope], *extra))}}}"


def firing_alerts(*, per_project: bool) -> str:
    """The firing OMS alerts of the selected OMS (and projects): ALERTS has no job label."""
    matchers = ['alertstate="firing"', 'alertname=~"OMS.+"', 'oms=~"$oms"']
    if per_project:
        matchers.append('project_id=~"$project"')
    return f"ALERTS{{{', '.join(matchers)}}}"


def query(
    expr: str, *, legend: str = "", instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    """A target on `$datasource`; panels give the refIds (A, B, ...) in order.

    `instant` for panels that show the value now (stats, bars, tables), a range query
    for graphs; `table` returns labels as columns, for merged tables.
    """
    target = (
        prometheus.Dataquery()
        .datasource(DATASOURCE)
        .expr(expr)
        .legend_format(legend)
        .format(PromQueryFormat.TABLE if table else PromQueryFormat.TIME_SERIES)
    )
    return target.instant() if instant or table else target.range()
