"""The OMS project dashboard: one project in detail, opened from the overview's table."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from .common import PROJECT_UID, dashboard
from .panels import (
    STEP_STATUSES,
    at,
    bars,
    coloured_status_column,
    graph,
    lag_graph,
    merged_table,
    progress_bars,
    progress_column,
    stat_panel,
    status_by_code,
    status_timeline,
    thresholds,
    two_states,
    up_stat,
    value_map,
)
from .queries import firing_alerts, query, series


def build() -> dash.Dashboard:
    """The project dashboard: now (stats), over time (graphs), top to bottom."""
    board = dashboard(
        uid=PROJECT_UID,
        title="OMS project",
        description=(
            "One OceanBase Migration Service project in detail: status, steps, progress, "
            "lag, checkpoint and poll errors."
        ),
        many_projects=False,
    )
    for panel in [*_now(), *_steps_and_transfer(), *_over_time(), *_cutover()]:
        board = board.with_panel(panel)
    return board


def _now() -> list[Builder[dm.Panel]]:
    return [
        stat_panel(
            panel_id=1,
            title="Status",
            description="Project status as last polled",
            pos=at(0, 0, 4, 4),
            mappings=[status_by_code()],
            colours=thresholds("green"),
            background=True,
            targets=[
                query(series("oms_project:status:code"), legend="{{project_id}}", instant=True)
            ],
        ),
        stat_panel(
            panel_id=2,
            title="Current step",
            description="The step OMS reports the project in",
            pos=at(4, 0, 5, 4),
            colours=thresholds("blue"),
            show_name=True,
            targets=[query(series("oms_project_current_step"), legend="{{step}}", instant=True)],
        ),
        up_stat(
            panel_id=3,
            title="Last poll",
            description="Did the last poll of this project succeed?",
            pos=at(9, 0, 3, 4),
            states=("FAILING", "OK"),
            targets=[query(series("oms_project_up"), legend="{{project_id}}", instant=True)],
        ),
        stat_panel(
            panel_id=4,
            title="Last success",
            description="When this project was last polled successfully",
            pos=at(12, 0, 4, 4),
            unit="dateTimeFromNow",
            targets=[
                query(
                    f"{series('oms_project_last_success_timestamp_seconds')} * 1000",
                    legend="{{project_id}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=5,
            title="Alarm level · kind · API",
            description=(
                "OMS protection level (drives the lag thresholds), project kind and the API "
                "flavour the exporter talks to it with"
            ),
            pos=at(16, 0, 5, 4),
            show_name=True,
            targets=[
                query(
                    series("oms_project_info"),
                    legend="{{alarm_level}} · {{kind}} · {{api}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=6,
            title="Firing alerts",
            description="OMS alerts firing now for this project",
            pos=at(21, 0, 3, 4),
            colours=thresholds("green", (1, "red")),
            targets=[
                query(
                    f"count({firing_alerts(per_project=True)}) or vector(0)",
                    legend="alerts",
                    instant=True,
                )
            ],
        ),
        progress_bars(
            panel_id=7,
            title="Progress now",
            description=(
                "Schema (struct) and full migration progress. Absent when the step is "
                "disabled or not reported."
            ),
            pos=at(0, 4, 8, 5),
            targets=[
                query(series("oms_project_struct_progress_ratio"), legend="Struct", instant=True),
                query(series("oms_project_full_progress_ratio"), legend="Full", instant=True),
            ],
        ),
        stat_panel(
            panel_id=8,
            title="Full migration ETA",
            description=(
                "Time left for the full migration at its speed over the last 15 minutes. "
                "Empty when it is not moving."
            ),
            pos=at(8, 4, 4, 5),
            unit="s",
            decimals=0,
            targets=[
                query(series("oms_project:full_progress_eta_seconds"), legend="ETA", instant=True)
            ],
        ),
        stat_panel(
            panel_id=9,
            title="Lag now",
            description="How far incremental sync is behind, per direction",
            pos=at(12, 4, 6, 5),
            unit="s",
            decimals=0,
            targets=[
                query(
                    series("oms_project_incr_sync_lag_seconds"),
                    legend="{{direction}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=10,
            title="Enabled steps",
            description="Which steps the project was created with",
            pos=at(18, 4, 6, 5),
            mappings=[two_states(("off", "text"), ("on", "green"))],
            targets=[
                query(series("oms_project_feature_enabled"), legend="{{feature}}", instant=True)
            ],
        ),
        status_timeline(
            panel_id=11,
            title="Status and step",
            description="Status (first row) and the current step over time.",
            pos=at(0, 9, 24, 6),
            show_legend=False,
            targets=[
                query(series("oms_project:status:code"), legend="status"),
                query(series("oms_project_current_step"), legend="step {{step}}"),
            ],
        ).override_by_regexp(
            "/^step .*/",
            [
                dm.DynamicConfigValue(
                    id_val="mappings", value=[value_map([("1", "current", "blue")])]
                )
            ],
        ),
    ]


# Steps whose progress is 1 or 0 by their status publish none (see the metrics table).
AT_ONE = 'status=~"FINISHED|MONITORING"'
AT_ZERO = 'status="INIT"'


def _steps_and_transfer() -> list[Builder[dm.Panel]]:
    steps = merged_table(
        panel_id=18,
        title="Steps",
        description=(
            "Each step of the project as OMS 4.x reports it (DescribeProjectSteps): its "
            "status and progress. Empty on OMS 3.3 and when step details are turned off."
        ),
        pos=at(0, 15, 12, 8),
        label_queries=[f"max by (step, status) ({series('oms_project_step_status')} == 1)"],
        value_columns=[
            (
                "Progress",
                # A FINISHED or MONITORING step publishes no progress: it is at 1;
                # an INIT one is at 0.
                f"max by (step) ({series('oms_project_step_progress_ratio')}) or "
                f"max by (step) ({series('oms_project_step_status', AT_ONE)}) or "
                f"0 * max by (step) ({series('oms_project_step_status', AT_ZERO)})",
            )
        ],
        columns=[("step", "Step"), ("status", "Status")],
    )
    return [
        steps.override_by_name(
            "Status", coloured_status_column(STEP_STATUSES, width=130)
        ).override_by_name("Progress", progress_column()),
        stat_panel(
            panel_id=19,
            title="Full transfer rows",
            description=(
                "Rows the full transfer has written, and the rows OMS estimated the source "
                "holds (the estimate can be exceeded)."
            ),
            pos=at(12, 15, 12, 4),
            unit="short",
            colours=thresholds("blue"),
            targets=[
                query(
                    series("oms_project_full_transfer_processed_rows"),
                    legend="processed",
                    instant=True,
                ),
                query(
                    series("oms_project_full_transfer_estimated_rows"),
                    legend="estimated",
                    instant=True,
                ),
            ],
        ),
        stat_panel(
            panel_id=20,
            title="Full transfer rate",
            description=(
                "Rows per second the full transfer reads from the source and writes to the "
                "sink, as OMS reports them now."
            ),
            pos=at(12, 19, 6, 4),
            unit="count:rows/s",
            targets=[
                query(
                    series("oms_project_full_transfer_source_rows_per_second"),
                    legend="source",
                    instant=True,
                ),
                query(
                    series("oms_project_full_transfer_sink_rows_per_second"),
                    legend="sink",
                    instant=True,
                ),
            ],
        ),
        stat_panel(
            panel_id=21,
            title="Full transfer ETA",
            description=(
                "Rows left over the sink's current rate, from OMS's own row counts (the Full "
                "migration ETA above uses the progress trend instead). Empty when the "
                "transfer is not writing."
            ),
            pos=at(18, 19, 6, 4),
            unit="s",
            decimals=0,
            targets=[
                query(series("oms_project_full_transfer_eta_seconds"), legend="ETA", instant=True)
            ],
        ),
    ]


def _over_time() -> list[Builder[dm.Panel]]:
    return [
        lag_graph(
            panel_id=12,
            description=(
                "How far incremental sync is behind, per direction. Dashed: this project's "
                "alert thresholds for its alarm level (warning orange, critical red)."
            ),
            pos=at(0, 23, 12, 9),
        ),
        graph(
            panel_id=13,
            title="Progress",
            description="Schema (struct) and full migration progress.",
            pos=at(12, 23, 12, 9),
            unit="percentunit",
            ratio=True,
            targets=[
                query(series("oms_project_struct_progress_ratio"), legend="struct"),
                query(series("oms_project_full_progress_ratio"), legend="full"),
            ],
        ),
        graph(
            panel_id=14,
            title="Incremental sync checkpoint",
            description="The checkpoint OMS reports, per direction: a flat line is a stalled sync.",
            pos=at(0, 32, 12, 8),
            unit="dateTimeAsIso",
            targets=[
                query(
                    f"{series('oms_project_incr_sync_checkpoint_timestamp_seconds')} * 1000",
                    legend="{{direction}}",
                )
            ],
        ),
        graph(
            panel_id=15,
            title="Full migration speed and ETA",
            description=(
                "Full-migration progress per hour (left) and the time left at that speed (right)."
            ),
            pos=at(12, 32, 12, 8),
            unit="percentunit",
            targets=[
                query(
                    f"{series('oms_project:full_progress_ratio:deriv15m')} * 3600",
                    legend="progress per hour",
                ),
                query(series("oms_project:full_progress_eta_seconds"), legend="ETA"),
            ],
        ).override_by_name(
            "ETA",
            [
                dm.DynamicConfigValue(id_val="unit", value="s"),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        ),
        graph(
            panel_id=16,
            title="Poll errors by reason",
            description="Failed polls of this project per second, by reason.",
            pos=at(0, 40, 12, 7),
            unit="reqps",
            fill=30,
            stacked=True,
            targets=[
                query(
                    "sum by (reason) "
                    f"(rate({series('oms_project_poll_errors_total')}[$__rate_interval]))",
                    legend="{{reason}}",
                )
            ],
        ),
        graph(
            panel_id=17,
            title="Polled successfully",
            description="1 when the poll succeeded, 0 when it failed.",
            pos=at(12, 40, 12, 7),
            unit="none",
            fill=20,
            ratio=True,
            decimals=0,
            targets=[query(series("oms_project_up"), legend="up")],
        ),
    ]


def _cutover() -> list[Builder[dm.Panel]]:
    """Can this migration cut over now, what blocks it, and what the verification found."""
    return [
        stat_panel(
            panel_id=22,
            title="Cut-over",
            description=(
                "Whether this migration could cut over now (oms_project_cutover_ready): "
                "computed when Prometheus scrapes, so a frozen OMS never reads ready. Only "
                "migrations with incremental sync."
            ),
            pos=at(0, 47, 4, 5),
            mappings=[two_states(("BLOCKED", "orange"), ("READY", "green"))],
            background=True,
            targets=[query(series("oms_project_cutover_ready"), legend="cut-over", instant=True)],
        ),
        stat_panel(
            panel_id=23,
            title="Cut-over blockers",
            description=(
                "The blockers that hold now (oms_project_cutover_blocked == 1): stale, status, "
                "struct, full, verification_running, verification_inconsistent, "
                "incr_not_running, lag, alarming."
            ),
            pos=at(4, 47, 8, 5),
            show_name=True,
            colours=thresholds("orange"),
            targets=[
                query(
                    f"{series('oms_project_cutover_blocked')} == 1",
                    legend="{{blocker}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=24,
            title="Verification: different rows",
            description=(
                "Rows OMS's full verification found different (differentNumber); "
                "4.x projects with full verification only."
            ),
            pos=at(12, 47, 4, 5),
            unit="short",
            colours=thresholds("green", (1, "red")),
            targets=[
                query(
                    series("oms_project_full_verify_different_rows"),
                    legend="different rows",
                    instant=True,
                )
            ],
        ),
        bars(
            panel_id=25,
            title="Verified tables by result",
            description=(
                "Tables of the full verification by result (oms_project_full_verify_tables); "
                "results with no table are left out."
            ),
            pos=at(16, 47, 8, 5),
            unit="short",
            colours=thresholds("blue"),
            targets=[
                query(
                    f"{series('oms_project_full_verify_tables')} > 0",
                    legend="{{result}}",
                    instant=True,
                )
            ],
        ),
    ]
