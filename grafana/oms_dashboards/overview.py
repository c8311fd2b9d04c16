"""The OMS overview: every selected project, and the exporter's own health."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, stat, table
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import PROJECT_UID, dashboard
from .panels import (
    LAG_COLOURS,
    PROJECT_STATUSES,
    at,
    bars,
    coloured_status_column,
    count_of,
    dashed_line,
    graph,
    lag_graph,
    merged_table,
    progress_column,
    stat_panel,
    status_timeline,
    summary_stat,
    thresholds,
    two_states,
    up_stat,
)
from .queries import firing_alerts, query, series

UID = "oms-overview"
# A project id opens its dashboard with the same data source, job, OMS and time range.
PROJECT_LINK = (
    f"/d/{PROJECT_UID}/oms-project?${{datasource:queryparam}}&${{job:queryparam}}"
    "&var-oms=${__data.fields.oms}&var-project=${__data.fields.project_id}"
    "&${__url_time_range}"
)


def build() -> dash.Dashboard:
    """The overview, row by row."""
    board = dashboard(
        uid=UID,
        title="OMS overview",
        description=(
            "OceanBase Migration Service projects as seen by oms-exporter: status, "
            "progress, lag, and the exporter's health."
        ),
        many_projects=True,
    )
    board = board.with_row(dash.Row("Summary").id(1).grid_pos(at(0, 0, 24, 1)))
    for panel in _summary():
        board = board.with_panel(panel)
    board = board.with_panel(_projects_table())
    board = board.with_row(dash.Row("Over time").id(11).grid_pos(at(0, 17, 24, 1)))
    for panel in _over_time():
        board = board.with_panel(panel)
    board = board.with_row(dash.Row("Exporter").id(17).grid_pos(at(0, 43, 24, 1)))
    for panel in _exporter():
        board = board.with_panel(panel)
    return board


def _summary() -> list[stat.Panel]:
    status = "oms_project_status"
    return [
        summary_stat(
            panel_id=2,
            title="Selected projects",
            description="Projects polled (selected by the variables)",
            pos=at(0, 1, 3, 4),
            expr=count_of(series("oms_project_up")),
            colours=thresholds("blue"),
        ),
        summary_stat(
            panel_id=3,
            title="Running",
            description="Projects in a RUNNING status (RUNNING, RUNNING_MODIFYING, ...)",
            pos=at(3, 1, 3, 4),
            expr=count_of(series(status, 'status=~"RUNNING.*"') + " == 1"),
            colours=thresholds("green"),
        ),
        summary_stat(
            panel_id=4,
            title="Failed",
            description="Projects in status FAILED",
            pos=at(6, 1, 2, 4),
            expr=count_of(series(status, 'status="FAILED"') + " == 1"),
            colours=thresholds("green", (1, "red")),
        ),
        summary_stat(
            panel_id=5,
            title="Suspended",
            description="Projects in status SUSPEND",
            pos=at(8, 1, 2, 4),
            expr=count_of(series(status, 'status="SUSPEND"') + " == 1"),
            colours=thresholds("green", (1, "orange")),
        ),
        summary_stat(
            panel_id=6,
            title="Polls failing",
            description="Projects whose last poll failed (oms_project_up == 0)",
            pos=at(10, 1, 3, 4),
            expr=count_of(f"{series('oms_project_up')} == 0"),
            colours=thresholds("green", (1, "orange")),
        ),
        summary_stat(
            panel_id=34,
            title="Ready for cut-over",
            description=(
                "Migrations with no cut-over blocker now (oms_project_cutover_ready == 1)"
            ),
            pos=at(13, 1, 3, 4),
            expr=count_of(f"{series('oms_project_cutover_ready')} == 1"),
            colours=thresholds("blue", (1, "green")),
        ),
        summary_stat(
            panel_id=7,
            title="Worst lag",
            description="Largest incremental sync lag of the selected projects",
            pos=at(16, 1, 3, 4),
            expr=f"max({series('oms_project_incr_sync_lag_seconds')})",
            unit="s",
            colours=thresholds("green", *LAG_COLOURS),
        ),
        summary_stat(
            panel_id=8,
            title="Firing alerts",
            description="OMS alerts firing now for the selected OMS",
            pos=at(19, 1, 3, 4),
            expr=count_of(firing_alerts(per_project=False)),
            colours=thresholds("green", (1, "red")),
        ),
        summary_stat(
            panel_id=9,
            title="OMS API",
            description="Whether every selected OMS answered the last poll round (oms_up)",
            pos=at(22, 1, 2, 4),
            expr=f"min({series('oms_up', scope='oms')})",
            colours=thresholds("red", (1, "green")),
            mappings=[two_states(("DOWN", "red"), ("UP", "green"))],
        ),
    ]


def _projects_table() -> table.Panel:
    panel = merged_table(
        panel_id=10,
        title="Projects",
        description=(
            "Every selected project as last polled. Click a project id for its dashboard. "
            "Lag is the worse of forward and reverse."
        ),
        pos=at(0, 5, 24, 12),
        # Status, step and alarm level, kind and API are labels: these three give them.
        label_queries=[
            f"{series('oms_project_status')} == 1",
            series("oms_project_current_step"),
            series("oms_project_info"),
        ],
        value_columns=[
            ("Struct", series("oms_project_struct_progress_ratio")),
            ("Full", series("oms_project_full_progress_ratio")),
            ("Full ETA", series("oms_project:full_progress_eta_seconds")),
            ("Lag", series("oms_project:incr_sync_lag_seconds:max")),
            ("Cut-over", series("oms_project_cutover_ready")),
            ("Poll", series("oms_project_up")),
            ("Last success", f"{series('oms_project_last_success_timestamp_seconds')} * 1000"),
        ],
        columns=[
            ("oms", "OMS"),
            ("project_id", "Project"),
            ("status", "Status"),
            ("step", "Step"),
            ("alarm_level", "Alarm level"),
            ("kind", "Kind"),
            ("api", "API"),
        ],
        hidden_labels=["job", "instance", "__name__"],
        filterable=True,
    )
    return (
        panel.sort_by([common.TableSortByFieldState().display_name("Status").desc(False)])
        .override_by_name(
            "Project",
            [
                dm.DynamicConfigValue(
                    id_val="links", value=[{"title": "Project dashboard", "url": PROJECT_LINK}]
                ),
                dm.DynamicConfigValue(id_val="custom.width", value=180),
            ],
        )
        .override_by_name("Status", coloured_status_column(PROJECT_STATUSES, width=170))
        .override_by_name("Struct", progress_column())
        .override_by_name("Full", progress_column())
        .override_by_name(
            "Full ETA",
            [
                dm.DynamicConfigValue(id_val="unit", value="s"),
                dm.DynamicConfigValue(id_val="decimals", value=0),
            ],
        )
        .override_by_name(
            "Lag",
            [
                dm.DynamicConfigValue(id_val="unit", value="s"),
                dm.DynamicConfigValue(id_val="decimals", value=0),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value=cm.TableColorTextCellOptions()
                ),
                dm.DynamicConfigValue(
                    id_val="thresholds", value=thresholds("green", *LAG_COLOURS).build()
                ),
            ],
        )
        .override_by_name(
            "Poll",
            [
                dm.DynamicConfigValue(
                    id_val="mappings", value=[two_states(("FAILING", "red"), ("OK", "green"))]
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value=cm.TableColorTextCellOptions()
                ),
                dm.DynamicConfigValue(id_val="custom.width", value=80),
            ],
        )
        .override_by_name(
            "Cut-over",
            [
                dm.DynamicConfigValue(
                    id_val="mappings", value=[two_states(("blocked", "orange"), ("READY", "green"))]
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value=cm.TableColorTextCellOptions()
                ),
                dm.DynamicConfigValue(id_val="custom.width", value=90),
            ],
        )
        .override_by_name(
            "Last success", [dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")]
        )
    )


def _over_time() -> list[Builder[dm.Panel]]:
    return [
        status_timeline(
            panel_id=12,
            title="Status",
            description=(
                "Project status over time (oms_project:status:code, from the recording rules)."
            ),
            pos=at(0, 18, 24, 8),
            targets=[query(series("oms_project:status:code"), legend="{{oms}} / {{project_id}}")],
        ),
        lag_graph(
            panel_id=13,
            description=(
                "How far incremental sync is behind, per project and direction. Dashed: the "
                "alert thresholds of the selected projects' alarm levels (warning orange, "
                "critical red)."
            ),
            pos=at(0, 26, 12, 9),
        ),
        graph(
            panel_id=14,
            title="Full migration progress",
            description="Share of the full migration done, per project.",
            pos=at(12, 26, 12, 9),
            unit="percentunit",
            ratio=True,
            targets=[
                query(series("oms_project_full_progress_ratio"), legend="{{oms}} / {{project_id}}")
            ],
        ),
        bars(
            panel_id=15,
            title="Full migration ETA",
            description=(
                "Time left for the full migration at its speed over the last 15 minutes "
                "(oms_project:full_progress_eta_seconds). Empty when nothing is moving."
            ),
            pos=at(0, 35, 12, 8),
            unit="s",
            colours=thresholds("green", (86400, "orange")),
            targets=[
                query(
                    f"sort_desc({series('oms_project:full_progress_eta_seconds')})",
                    legend="{{oms}} / {{project_id}}",
                    instant=True,
                )
            ],
        ),
        graph(
            panel_id=16,
            title="Struct migration progress",
            description="Share of the schema (struct) migration done, per project.",
            pos=at(12, 35, 12, 8),
            unit="percentunit",
            ratio=True,
            targets=[
                query(
                    series("oms_project_struct_progress_ratio"), legend="{{oms}} / {{project_id}}"
                )
            ],
        ),
    ]


def _exporter() -> list[Builder[dm.Panel]]:
    return [
        up_stat(
            panel_id=18,
            title="Exporter scrape",
            description="Can Prometheus scrape the exporter (up)?",
            pos=at(0, 44, 4, 4),
            targets=[query(series("up", scope="job"), legend="{{instance}}", instant=True)],
        ),
        up_stat(
            panel_id=19,
            title="OMS API by OMS",
            description="Did each OMS answer the last poll round (oms_up)?",
            pos=at(4, 44, 4, 4),
            targets=[query(series("oms_up", scope="oms"), legend="{{oms}}", instant=True)],
        ),
        stat_panel(
            panel_id=20,
            title="Projects polled",
            description="Projects each OMS has the exporter poll",
            pos=at(8, 44, 4, 4),
            colours=thresholds("blue"),
            targets=[
                query(
                    f"sum by (oms) ({series('oms_exporter_projects', scope='oms')})",
                    legend="{{oms}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=21,
            title="Since last poll round",
            description=(
                "Time since the last poll round ended; the poller is wedged when this passes "
                "3 poll intervals (OMSExporterPollStalled)."
            ),
            pos=at(12, 44, 4, 4),
            unit="s",
            decimals=0,
            colours=thresholds("green", (300, "red")),
            targets=[
                query(
                    "time() - "
                    + series("oms_exporter_last_poll_round_timestamp_seconds", scope="job"),
                    legend="{{instance}}",
                    instant=True,
                )
            ],
        ),
        up_stat(
            panel_id=22,
            title="Config reload",
            description="Did the last configuration reload succeed?",
            pos=at(16, 44, 4, 4),
            states=("FAILED", "OK"),
            background=False,
            targets=[
                query(
                    series("oms_exporter_config_last_reload_successful", scope="job"),
                    legend="{{instance}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=23,
            title="Version",
            description="oms-exporter version (oms_exporter_build_info)",
            pos=at(20, 44, 4, 4),
            show_name=True,
            targets=[
                query(
                    series("oms_exporter_build_info", scope="job"),
                    legend="{{version}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=30,
            title="Projects discovered",
            description=(
                "Projects the last successful discovery (OMS 4.x ListProjects) found on each "
                "OMS, after the filters. Empty when the exporter is given its project ids."
            ),
            pos=at(0, 48, 6, 4),
            colours=thresholds("blue"),
            targets=[
                query(
                    f"max by (oms) ({series('oms_discovery_projects', scope='oms')})",
                    legend="{{oms}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=31,
            title="Since last discovery",
            description=(
                "Time since each exporter last discovered the projects of each OMS; "
                "OMSDiscoveryFailing fires past 15 minutes while discoveries fail."
            ),
            pos=at(6, 48, 6, 4),
            unit="s",
            decimals=0,
            colours=thresholds("green", (600, "orange"), (900, "red")),
            targets=[
                query(
                    "time() - "
                    + series("oms_discovery_last_success_timestamp_seconds", scope="oms"),
                    legend="{{oms}} {{instance}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=32,
            title="Discovery errors (1h)",
            description=(
                "Failed discoveries in the last hour, by OMS and reason. Empty when none failed."
            ),
            pos=at(12, 48, 6, 4),
            decimals=0,
            colours=thresholds("green", (1, "red")),
            targets=[
                query(
                    "sum by (oms, reason) "
                    f"(increase({series('oms_discovery_errors_total', scope='oms')}[1h]))",
                    legend="{{oms}} {{reason}}",
                    instant=True,
                )
            ],
        ),
        stat_panel(
            panel_id=33,
            title="Missing shards",
            description=(
                "Per job of a sharded exporter: shard ordinals that do not report (their "
                "projects are unmonitored, OMSExporterShardMissing). Empty when the exporter "
                "is not sharded."
            ),
            pos=at(18, 48, 6, 4),
            decimals=0,
            colours=thresholds("green", (1, "red")),
            targets=[
                query(
                    f"max by (job) ({series('oms_exporter_shard_count', scope='job')})"
                    " - count by (job) (count_values by (job) "
                    f'("ordinal", {series("oms_exporter_shard_ordinal", scope="job")}))',
                    legend="{{job}}",
                    instant=True,
                )
            ],
        ),
        graph(
            panel_id=24,
            title="Poll round duration",
            description=(
                "How long each poll round took, against the configured poll interval (dashed)."
            ),
            pos=at(0, 52, 8, 8),
            unit="s",
            targets=[
                query(
                    series("oms_exporter_last_poll_round_duration_seconds", scope="job"),
                    legend="{{instance}}",
                ),
                query(
                    series("oms_exporter_poll_interval_seconds", scope="job"),
                    legend="poll interval {{instance}}",
                ),
            ],
        ).override_by_regexp("/^poll interval.*/", dashed_line("orange")),
        graph(
            panel_id=25,
            title="Project poll errors by reason",
            description=(
                "Failed project polls per second, by reason (timeout, connection, http, auth, "
                "not_found, api_error, decode, invalid)."
            ),
            pos=at(8, 52, 8, 8),
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
            panel_id=26,
            title="OMS API requests and errors",
            description="Requests to each OMS API per second, and the failed ones by reason.",
            pos=at(16, 52, 8, 8),
            unit="reqps",
            targets=[
                query(
                    "sum by (oms) "
                    f"(rate({series('oms_api_requests_total', scope='oms')}[$__rate_interval]))",
                    legend="{{oms}} requests",
                ),
                query(
                    "sum by (oms, reason) (rate("
                    f"{series('oms_api_request_errors_total', scope='oms')}[$__rate_interval]))",
                    legend="{{oms}} errors: {{reason}}",
                ),
            ],
        ),
        graph(
            panel_id=27,
            title="OMS API latency",
            description="Median and 95th percentile of OMS API request durations.",
            pos=at(0, 60, 8, 8),
            unit="s",
            targets=[
                query(
                    f"histogram_quantile({quantile}, sum by (oms, le) (rate("
                    f"{series('oms_api_request_duration_seconds_bucket', scope='oms')}"
                    "[$__rate_interval])))",
                    legend=f"{{{{oms}}}} {name}",
                )
                for quantile, name in (("0.5", "p50"), ("0.95", "p95"))
            ],
        ),
        graph(
            panel_id=28,
            title="Exporter CPU",
            description="CPU used by the exporter process (1 = one core).",
            pos=at(8, 60, 8, 8),
            unit="percentunit",
            targets=[
                query(
                    f"rate({series('process_cpu_seconds_total', scope='job')}[$__rate_interval])",
                    legend="{{instance}}",
                )
            ],
        ),
        graph(
            panel_id=29,
            title="Exporter memory",
            description="Resident memory of the exporter process.",
            pos=at(16, 60, 8, 8),
            unit="bytes",
            targets=[
                query(series("process_resident_memory_bytes", scope="job"), legend="{{instance}}")
            ],
        ),
    ]
