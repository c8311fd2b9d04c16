"""The panel kinds both dashboards repeat, built with grafana-foundation-sdk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .queries import DATASOURCE, query, series

Panel = TypeVar(
    "Panel", stat.Panel, table.Panel, timeseries.Panel, bargauge.Panel, statetimeline.Panel
)
Properties = list[dm.DynamicConfigValue]

# Project statuses in the order of their code in the oms_project:status:code recording
# rule (deploy/prometheus/oms-exporter-rules.yml), with the colour every panel gives them.
PROJECT_STATUSES = (
    ("UNKNOWN", "#8F3BB8"),
    ("INIT", "blue"),
    ("RUNNING", "green"),
    ("SUSPEND", "orange"),
    ("FAILED", "red"),
    ("FINISHED", "super-light-blue"),
    ("RELEASING", "#8e8e8e"),
    ("RELEASED", "#6e6e6e"),
    ("DELETED", "#4e4e4e"),
    ("RUNNING_MODIFYING", "light-green"),
    ("RUNNING_MERGING", "light-green"),
    ("RUNNING_ALARMING", "yellow"),
)
# Step statuses of OMS 4.x DescribeProjectSteps (oms_project_step_status{status}).
STEP_STATUSES = (
    ("INIT", "blue"),
    ("RUNNING", "green"),
    ("MONITORING", "light-green"),
    ("SUSPEND", "orange"),
    ("FAILED", "red"),
    ("FINISHED", "super-light-blue"),
    ("UNKNOWN", "#8F3BB8"),
)
LAG_COLOURS = ((300, "orange"), (900, "red"))  # the HIGH alarm level's thresholds


def at(x: int, y: int, w: int, h: int) -> dm.GridPos:
    """A panel's place on the 24-column grid."""
    return dm.GridPos(x=x, y=y, w=w, h=h)


# ---------------------------------------------------------------- field configuration
def thresholds(base: str, *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: `base` colour, then (from value, colour) steps."""
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=value, color=colour) for value, colour in steps]
        )
    )


def value_map(entries: Sequence[tuple[str, str, str]]) -> dm.ValueMap:
    """(value, text, colour) entries; their order is the legend's."""
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=colour, index=index)
            for index, (value, text, colour) in enumerate(entries)
        }
    )


def two_states(off: tuple[str, str], on: tuple[str, str]) -> dm.ValueMap:
    """Texts and colours for a 0/1 series (up, enabled, reload successful)."""
    return value_map([("0", *off), ("1", *on)])


def status_by_code() -> dm.ValueMap:
    """oms_project:status:code values back to their status names."""
    return value_map([(str(code), s, colour) for code, (s, colour) in enumerate(PROJECT_STATUSES)])


def status_by_name(statuses: Sequence[tuple[str, str]] = PROJECT_STATUSES) -> dm.ValueMap:
    """Colours for a `status` label shown as text (table cells)."""
    return value_map([(s, s, colour) for s, colour in statuses])


def ref_id(index: int) -> str:
    """The refId of a panel's `index`th target: A, B, C, ..."""
    return chr(ord("A") + index)


def _colour(mode: dm.FieldColorModeId) -> dash.FieldColor:
    return dash.FieldColor().mode(mode)


def _base(
    panel: Panel,
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
) -> Panel:
    """What every panel has: id, place, title, description, unit, `$datasource` targets."""
    panel = (
        panel.id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(pos)
        .unit(unit)
    )
    for index, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(ref_id(index)))
    return panel


# ---------------------------------------------------------------- stats
def stat_panel(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    targets: Sequence[prometheus.Dataquery],
    unit: str = "none",
    colours: dash.ThresholdsConfig | None = None,
    mappings: Sequence[dm.ValueMap] = (),
    background: bool = False,
    show_name: bool = False,
    decimals: int | None = None,
) -> stat.Panel:
    """A number (or, with `show_name`, the series name: a label) per series, no graph."""
    panel = (
        _base(
            stat.Panel(),
            panel_id=panel_id,
            title=title,
            description=description,
            pos=pos,
            unit=unit,
            targets=targets,
        )
        .mappings(list(mappings))
        .thresholds(colours or thresholds("text"))
        .color_scheme(_colour(dm.FieldColorModeId.THRESHOLDS))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .orientation(cm.VizOrientation.AUTO)
        .text_mode(cm.BigValueTextMode.NAME if show_name else cm.BigValueTextMode.AUTO)
        .color_mode(cm.BigValueColorMode.BACKGROUND if background else cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .wide_layout(True)
        .show_percent_change(False)
    )
    return panel if decimals is None else panel.decimals(decimals)


def summary_stat(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    expr: str,
    colours: dash.ThresholdsConfig,
    unit: str = "none",
    mappings: Sequence[dm.ValueMap] = (),
) -> stat.Panel:
    """One number over all selected projects (a count, the worst lag), titled as it reads."""
    return stat_panel(
        panel_id=panel_id,
        title=title,
        description=description,
        pos=pos,
        targets=[query(expr, legend=title)],
        unit=unit,
        colours=colours,
        mappings=mappings,
    )


def count_of(selector: str) -> str:
    """How many series match: 0, not "no data", when none does."""
    return f"count({selector}) or vector(0)"


def up_stat(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    targets: Sequence[prometheus.Dataquery],
    states: tuple[str, str] = ("DOWN", "UP"),
    background: bool = True,
) -> stat.Panel:
    """A 0/1 health series as a red or green word."""
    off, on = states
    return stat_panel(
        panel_id=panel_id,
        title=title,
        description=description,
        pos=pos,
        targets=targets,
        colours=thresholds("red", (1, "green")),
        mappings=[two_states((off, "red"), (on, "green"))],
        background=background,
    )


# ---------------------------------------------------------------- graphs
def dashed_line(colour: str) -> Properties:
    """Override properties drawing a reference series (a threshold) as a dashed line."""
    return [
        dm.DynamicConfigValue(
            id_val="color", value=dm.FieldColor(mode=dm.FieldColorModeId.FIXED, fixed_color=colour)
        ),
        dm.DynamicConfigValue(
            id_val="custom.lineStyle", value=cm.LineStyle(fill="dash", dash=[10, 10])
        ),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="custom.lineWidth", value=2),
    ]


def graph(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    fill: int = 0,
    stacked: bool = False,
    ratio: bool = False,
    decimals: int | None = None,
) -> timeseries.Panel:
    """Lines over time with a table legend (last, max); `ratio` fixes the axis to 0..1."""
    panel = (
        _base(
            timeseries.Panel(),
            panel_id=panel_id,
            title=title,
            description=description,
            pos=pos,
            unit=unit,
            targets=targets,
        )
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_interpolation(cm.LineInterpolation.LINEAR)
        .line_width(1)
        .fill_opacity(fill)
        .gradient_mode(cm.GraphGradientMode.NONE)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .axis_placement(cm.AxisPlacement.AUTO)
        .axis_soft_min(0)
        .stacking(
            common.StackingConfig()
            .mode(cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE)
            .group("A")
        )
        .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.OFF))
        .color_scheme(_colour(dm.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(thresholds("green"))
        .mappings([])
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
    )
    if ratio:
        panel = panel.min(0).max(1)
    return panel if decimals is None else panel.decimals(decimals)


def lag_graph(*, panel_id: int, description: str, pos: dm.GridPos) -> timeseries.Panel:
    """Incremental-sync lag per direction, under the alert thresholds of its alarm level."""
    panel = graph(
        panel_id=panel_id,
        title="Incremental sync lag",
        description=description,
        pos=pos,
        unit="s",
        fill=10,
        targets=[
            query(
                series("oms_project_incr_sync_lag_seconds"),
                legend="{{oms}} / {{project_id}} {{direction}}",
            ),
            *(
                query(
                    f"max by (alarm_level) "
                    f"({series(f'oms_project:incr_sync_lag_{severity}_threshold_seconds')})",
                    legend=f"{severity} threshold ({{{{alarm_level}}}})",
                )
                for severity in ("warning", "critical")
            ),
        ],
    )
    return panel.override_by_regexp(
        "/^warning threshold.*/", dashed_line("orange")
    ).override_by_regexp("/^critical threshold.*/", dashed_line("red"))


def bars(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    colours: dash.ThresholdsConfig,
    gradient: bool = False,
    ratio: bool = False,
) -> bargauge.Panel:
    """Horizontal bars of the value now, one per series."""
    panel = _base(
        bargauge.Panel(),
        panel_id=panel_id,
        title=title,
        description=description,
        pos=pos,
        unit=unit,
        targets=targets,
    ).min(0)
    if ratio:
        panel = panel.max(1)
    return (
        panel.decimals(0)
        .mappings([])
        .thresholds(colours)
        .color_scheme(_colour(dm.FieldColorModeId.THRESHOLDS))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT if gradient else cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .show_unfilled(True)
        .value_mode(cm.BarGaugeValueMode.COLOR)
        .name_placement(cm.BarGaugeNamePlacement.AUTO)
        .sizing(cm.BarGaugeSizing.AUTO)
        .min_viz_height(16)
        .min_viz_width(8)
        .max_viz_height(300)
    )


def progress_bars(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    targets: Sequence[prometheus.Dataquery],
) -> bargauge.Panel:
    """Progress ratios as 0-100 % bars, green when done."""
    return bars(
        panel_id=panel_id,
        title=title,
        description=description,
        pos=pos,
        targets=targets,
        unit="percentunit",
        colours=thresholds("blue", (1, "green")),
        gradient=True,
        ratio=True,
    )


def status_timeline(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    targets: Sequence[prometheus.Dataquery],
    show_legend: bool = True,
) -> statetimeline.Panel:
    """oms_project:status:code over time as coloured bands named after the status."""
    return (
        _base(
            statetimeline.Panel(),
            panel_id=panel_id,
            title=title,
            description=description,
            pos=pos,
            unit="none",
            targets=targets,
        )
        .mappings([status_by_code()])
        .thresholds(thresholds("green"))
        .color_scheme(_colour(dm.FieldColorModeId.THRESHOLDS))
        .line_width(0)
        .fill_opacity(80)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .align_value(cm.TimelineValueAlignment.LEFT)
        .row_height(0.9)
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(show_legend)
        )
        .tooltip(
            common.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE)
        )
    )


# ---------------------------------------------------------------- tables
def merged_table(
    *,
    panel_id: int,
    title: str,
    description: str,
    pos: dm.GridPos,
    label_queries: Sequence[str],
    value_columns: Sequence[tuple[str, str]],
    columns: Sequence[tuple[str, str]],
    hidden_labels: Sequence[str] = (),
    filterable: bool = False,
) -> table.Panel:
    """One row per series: instant queries merged on their labels.

    `label_queries` contribute labels only (their value is hidden); each of
    `value_columns` (header, expr) adds its value as a column; `columns` (label, header)
    names and orders the label columns, before the value columns.
    """
    exprs = [*label_queries, *(expr for _, expr in value_columns)]
    hidden_values = [f"Value #{ref_id(i)}" for i in range(len(label_queries))]
    shown_values = [
        (f"Value #{ref_id(len(label_queries) + i)}", header)
        for i, (header, _) in enumerate(value_columns)
    ]
    ordered = [*columns, *shown_values]
    organize = {
        "excludeByName": dict.fromkeys(["Time", *hidden_labels, *hidden_values], True),
        "indexByName": {name: index for index, (name, _) in enumerate(ordered)},
        "renameByName": dict(ordered),
    }
    return (
        _base(
            table.Panel(),
            panel_id=panel_id,
            title=title,
            description=description,
            pos=pos,
            unit="none",
            targets=[query(expr, table=True) for expr in exprs],
        )
        .align(cm.FieldTextAlignment.AUTO)
        .cell_options(cm.TableAutoCellOptions())
        .filterable(filterable)
        .inspect(False)
        .mappings([])
        .thresholds(thresholds("green"))
        .color_scheme(_colour(dm.FieldColorModeId.THRESHOLDS))
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(common.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False))
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options=organize))
    )


def coloured_status_column(statuses: Sequence[tuple[str, str]], *, width: int) -> Properties:
    """A status label column on its status colour."""
    return [
        dm.DynamicConfigValue(id_val="mappings", value=[status_by_name(statuses)]),
        dm.DynamicConfigValue(
            id_val="custom.cellOptions",
            value=cm.TableColoredBackgroundCellOptions(
                mode=cm.TableCellBackgroundDisplayMode.BASIC
            ),
        ),
        dm.DynamicConfigValue(id_val="custom.width", value=width),
    ]


def progress_column() -> Properties:
    """A progress ratio column as a gauge bar with its percentage."""
    return [
        dm.DynamicConfigValue(id_val="unit", value="percentunit"),
        dm.DynamicConfigValue(id_val="min", value=0),
        dm.DynamicConfigValue(id_val="max", value=1),
        dm.DynamicConfigValue(id_val="decimals", value=0),
        dm.DynamicConfigValue(
            id_val="custom.cellOptions",
            value=cm.TableBarGaugeCellOptions(
                mode=cm.BarGaugeDisplayMode.BASIC, value_display_mode=cm.BarGaugeValueMode.TEXT
            ),
        ),
        dm.DynamicConfigValue(id_val="thresholds", value=thresholds("blue", (1, "green")).build()),
    ]
