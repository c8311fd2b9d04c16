"""What both dashboards share: variables, links, the alert annotation, the frame."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm

from .queries import DATASOURCE, firing_alerts

TAGS = ["oms", "oms-exporter"]
RUNBOOK = "https://github.com/oms-exporter/oms-exporter/blob/main/docs/runbook.md"
PROJECT_UID = "oms-project"


def variables(*, many_projects: bool) -> list[dash.DatasourceVariable | dash.QueryVariable]:
    """`datasource`, then `job`, `oms` and `project`, each narrowing the next.

    The overview selects many projects (All by default); the project dashboard one.
    """
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _label_values(
            "job",
            label="Job",
            description="Prometheus job(s) scraping the oms-exporter",
            definition="label_values(oms_exporter_build_info, job)",
        ),
        _label_values(
            "oms",
            label="OMS",
            description="OMS instance(s), as named in the exporter's configuration",
            definition='label_values(oms_up{job=~"$job"}, oms)',
        ),
        _label_values(
            "project",
            label="Project",
            description="OMS project id(s)",
            definition='label_values(oms_project_up{job=~"$job", oms=~"$oms"}, project_id)',
            many=many_projects,
        ),
    ]


class _QueryVariableModel(dm.VariableModel):
    """A query variable with `definition`, which the SDK's model lacks."""

    definition = ""

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "definition": self.definition}


class LabelValuesVariable(dash.QueryVariable):
    """A variable listing the values of a label; Grafana shows `definition` in its list."""

    def __init__(self, name: str, *, definition: str) -> None:
        super().__init__(name)
        model = _QueryVariableModel(type_val=dm.VariableType.QUERY, name=name)
        model.definition = definition
        self._internal = model
        # The Prometheus variable editor's own form (qryType 1: label values).
        query = {"query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"}
        self.query({**query, "qryType": 1})


def _label_values(
    name: str, *, label: str, description: str, definition: str, many: bool = True
) -> dash.QueryVariable:
    """A multi-value variable with All (any value), or a single-value one."""
    variable = (
        LabelValuesVariable(name, definition=definition)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(many)
        .include_all(many)
    )
    return variable.all_value(".*") if many else variable


def links() -> list[dash.DashboardLink]:
    """The other OMS dashboard (carrying the variables and time range), and the runbook."""
    return [
        dash.DashboardLink("OMS dashboards")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["oms"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
        .icon("external link")
        .tooltip(""),
        dash.DashboardLink("Runbook")
        .type(dm.DashboardLinkType.LINK)
        .url(RUNBOOK)
        .icon("doc")
        .target_blank(True)
        .tooltip("What each alert means and what to do"),
    ]


class _PrometheusAnnotationQuery(dm.AnnotationQuery):
    """An annotation with the Prometheus data source's fields, which the SDK's model lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.prometheus: dict[str, Any] = {}

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.prometheus}


class PrometheusAnnotation(dash.AnnotationQuery):
    """Marks on every graph from a PromQL query: title and text from its labels."""

    def __init__(self, name: str, *, expr: str, title: str, text: str, tag_keys: str) -> None:
        super().__init__()
        annotation = _PrometheusAnnotationQuery()
        annotation.prometheus = {
            "step": "1m",
            "titleFormat": title,
            "textFormat": text,
            "tagKeys": tag_keys,
            "useValueForTime": False,
        }
        self._internal = annotation
        self.name(name).datasource(DATASOURCE).enable(True).hide(False).expr(expr)


def annotations() -> list[dash.AnnotationQuery]:
    """Grafana's own annotations, and the firing OMS alerts of the selected projects."""
    return [
        dash.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .built_in(1)
        .type("dashboard")
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)"),
        PrometheusAnnotation(
            "Firing OMS alerts",
            expr=firing_alerts(per_project=True),
            title="{{alertname}}",
            text="{{severity}}: {{oms}} / {{project_id}}",
            tag_keys="severity",
        ).icon_color("red"),
    ]


def dashboard(*, uid: str, title: str, description: str, many_projects: bool) -> dash.Dashboard:
    """An OMS dashboard without panels: importable as is (no id, no __inputs)."""
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("")
        .week_start("")
        .fiscal_year_start_month(0)
        .refresh("1m")
        .links(links())
        .annotations(annotations())
        .variables(variables(many_projects=many_projects))
    )
