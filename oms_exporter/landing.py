"""The page at /: what a person without Grafana needs, server-rendered, no external assets.

One HTML table of the projects, problems first, refreshed by ``<meta http-equiv=refresh>``,
with each migration's cut-over readiness (``readiness.assess`` at render time) and the
tables its full verification found worst, folded in a ``<details>``;
no JavaScript, no external URL, a Content-Security-Policy that forbids loading anything.
Every value that came from configuration or OMS is escaped; no secret is ever passed in.
With many projects only the first ``MAX_ROWS`` (down and failed ones first) are shown, so
the page stays small and cheap; the summary counts all of them and /metrics has them all.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from oms_exporter import __version__
from oms_exporter.model import ALL_STATUSES, MAX_WORST_TABLES, FullVerification, VerifiedTable
from oms_exporter.readiness import DEFAULT_MAX_LAG_SECONDS, applies, assess
from oms_exporter.store import ProjectState

if TYPE_CHECKING:
    from oms_exporter.config import ExporterConfig
    from oms_exporter.runtime import Exporter

MAX_ROWS: Final = 500
_MAX_NAME: Final = 120
_MAX_ERROR: Final = 300
_MAX_RAW: Final = 64
_MAX_TABLE_NAME: Final = 200
NO_DATA: Final = "NO DATA"  # down before OMS ever answered
PENDING: Final = "NOT POLLED YET"
# Each cut-over blocker in words, for a person; its check's detail follows.
BLOCKER_WORDS: Final = {
    "stale": "no recent poll",
    "status": "not running",
    "struct": "structure not done",
    "full": "full data not done",
    "verification_running": "verification running",
    "verification_inconsistent": "verification found differences",
    "incr_not_running": "incremental sync not steady",
    "lag": "lag too high",
    "alarming": "OMS is alarming",
}

# Every colour on the page. tests/test_status_page.py computes the WCAG contrast of each
# text colour on each background it can appear on (>= 4.5:1) and that the page uses no
# other colour, so change them here only.
TEXT_COLOURS: Final = {
    "text": "#1a1a1a",
    "muted": "#595959",
    "up": "#0b5d1e",
    "down": "#8b0000",
    "link": "#0645ad",
}
BACKGROUNDS: Final = {"page": "#ffffff", "head": "#e8e8e8", "down_row": "#fff0f0"}
BORDER: Final = "#b3b3b3"  # table rules, decoration only
_RED: Final = ("#8b0000", "#fde2e1")
_AMBER: Final = ("#6b4400", "#fff1c1")
_GREEN: Final = ("#0b5d1e", "#d8f3dc")
_BLUE: Final = ("#1d3557", "#dbe9f6")
_GREY: Final = ("#333333", "#eeeeee")
# Status badges: (text, background).
STATUS_COLOURS: Final = {
    "RUNNING": _GREEN,
    "RUNNING_MODIFYING": _GREEN,
    "RUNNING_MERGING": _GREEN,
    "RUNNING_ALARMING": _AMBER,
    "SUSPEND": _AMBER,
    "FAILED": _RED,
    "FINISHED": _BLUE,
    "INIT": _GREY,
    "RELEASING": _GREY,
    "RELEASED": _GREY,
    "DELETED": _GREY,
    "UNKNOWN": _AMBER,
    NO_DATA: _RED,
    PENDING: _GREY,
}
# Progress bars: fill on track, a graphical object (WCAG 1.4.11: >= 3:1). The bar is
# decoration; the percentage is always written next to it.
BAR_COLOURS: Final = ("#2b6cb0", "#d0d0d0")

# Sort order: down first, then the statuses that want a person, then the rest.
_ATTENTION: Final = {"FAILED": 1, "RUNNING_ALARMING": 2, "SUSPEND": 2, "UNKNOWN": 2}

_NONE: Final = '<span class="muted">&ndash;</span>'

_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def _style() -> str:
    t, b = TEXT_COLOURS, BACKGROUNDS
    fill, track = BAR_COLOURS
    badges = "".join(
        f".s-{_css_name(status)}{{color:{fg};background:{bg}}}"
        for status, (fg, bg) in STATUS_COLOURS.items()
    )
    return (
        f"body{{font-family:system-ui,sans-serif;margin:1.5rem;color:{t['text']};"
        f"background:{b['page']}}}"
        "h1{font-size:1.5rem;margin:0 0 .5rem}p{margin:.4rem 0}"
        f"a,a:visited{{color:{t['link']}}}"
        "table{border-collapse:collapse;width:100%;margin-top:1rem}"
        "caption{text-align:left;font-weight:600;padding:.3rem 0}"
        f"th,td{{padding:.35rem .6rem;border-bottom:1px solid {BORDER};text-align:left;"
        "vertical-align:top}"
        f"thead th{{background:{b['head']};position:sticky;top:0}}"
        "tbody th{font-weight:600;overflow-wrap:break-word;min-width:9rem;max-width:20rem}"
        f"tr.down-row{{background:{b['down_row']}}}"
        ".badge{padding:.1rem .45rem;border-radius:.3rem;font-weight:600;font-size:.9em;"
        "white-space:nowrap}"
        f"{badges}"
        f".bar{{width:4.5rem;height:.7rem;background:{track};border-radius:.2rem;"
        "display:inline-block;vertical-align:middle;margin-right:.3rem}"
        f".bar span{{display:block;height:100%;background:{fill};border-radius:.2rem}}"
        f".muted{{color:{t['muted']};font-weight:400}}"
        f".down{{color:{t['down']};font-weight:600}}.up{{color:{t['up']};font-weight:600}}"
        ".error{overflow-wrap:break-word;min-width:10rem;max-width:28rem}.nowrap{white-space:nowrap}"
        ".step{min-width:8.5rem}.cutover{min-width:7rem;max-width:15rem}"
        "details{margin-top:.3rem}summary{cursor:pointer}"
        "details ul{margin:.3rem 0 0;padding-left:1.1rem}details li{overflow-wrap:anywhere}"
    )


def _css_name(status: str) -> str:
    return status.lower().replace(" ", "-").replace("_", "-")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _age(now: float, then: float | None) -> str:
    if then is None:
        return '<span class="muted">never</span>'
    return f'<span title="{_utc(then)}">{_duration(max(0.0, now - then))} ago</span>'


def _percent(ratio: float) -> int:
    """Whole percent, never showing 100 % before the step is really done."""
    percent = math.floor(ratio * 100) if ratio < 1 else 100
    return max(0, min(100, percent))


def _bar(ratio: float | None) -> str:
    if ratio is None:
        return _NONE
    percent = _percent(ratio)
    return (
        f'<span class="nowrap"><span class="bar" aria-hidden="true">'
        f'<span style="width:{percent}%"></span></span>{percent}%</span>'
    )


def _lag(now: float, state: ProjectState) -> str:
    if state.progress is None:
        return _NONE
    parts = []
    for point in state.progress.checkpoints:
        direction = escape(point.direction)
        if point.seconds is None and point.raw.strip() in ("", "0"):
            parts.append(f'{direction}: <span class="muted">no checkpoint yet</span>')
        elif point.seconds is None:
            raw = escape(_clip(point.raw, _MAX_RAW))
            parts.append(f'{direction}: <span class="muted">checkpoint {raw}</span>')
        else:
            lag = _duration(max(0.0, now - point.seconds))
            when = _utc(point.seconds)
            parts.append(
                f'{direction}: <span class="nowrap" title="checkpoint {when}">{lag}</span>'
            )
    return "<br>".join(parts) or _NONE


def _table(table: VerifiedTable) -> str:
    where = _clip(
        f"{table.source_schema}.{table.source_table} → {table.dest_schema}", _MAX_TABLE_NAME
    )
    text = f"{escape(where)}: <strong>{escape(table.result)}</strong>"
    if table.status != "FINISHED":
        done = "" if table.progress_ratio is None else f", {_percent(table.progress_ratio)}%"
        text += f" ({escape(table.status)}{done})"
    if table.different_rows:
        text += f", {table.different_rows:,.0f} different rows"
    return f"<li>{text}</li>"


def _worst_tables(result: FullVerification | None) -> str:
    """The tables to look at first, folded away under a one-line summary."""
    if result is None or not result.worst_tables:
        return ""
    shown = result.worst_tables[:MAX_WORST_TABLES]
    different = (
        "" if result.different_rows is None else f"{result.different_rows:,.0f} rows differ; "
    )
    summary = f"Verification: {different}{len(shown)} of {result.table_count:,} tables to look at"
    items = "".join(_table(table) for table in shown)
    return f"<details><summary>{summary}</summary><ul>{items}</ul></details>"


def _cutover(now: float, state: ProjectState, *, interval: float, max_lag: float) -> str:
    """Ready, or the blockers in words, for migrations with incremental sync; else a dash."""
    progress = state.progress
    if progress is None:
        return _NONE
    tables = _worst_tables(progress.verification)
    if not applies(progress):
        return _NONE + tables
    readiness = assess(
        progress,
        up=state.up,
        last_success_seconds=state.last_success_seconds,
        now=now,
        interval_seconds=interval,
        max_lag_seconds=max_lag,
    )
    if readiness.ready:
        return '<span class="up">ready</span>' + tables
    # In words, each with its check's detail on hover: the other columns show the numbers.
    reasons = ", ".join(
        f'<span title="{escape(check.detail)}">'
        f"{escape(BLOCKER_WORDS.get(check.blocker, check.blocker))}</span>"
        for check in readiness.checks
        if check.blocked
    )
    return f'<span class="down">not ready</span><br><small>{reasons}</small>{tables}'


def status_text(state: ProjectState) -> str:
    """The status a person reads: OMS's (last known) status, or why there is none."""
    if state.progress is not None:
        return state.progress.status
    return PENDING if state.last_error_reason is None else NO_DATA


def _priority(state: ProjectState) -> int:
    if not state.up and state.last_error_reason is not None:
        return 0
    if state.progress is None:
        return 3
    return _ATTENTION.get(state.progress.status, 4)


def _badge(status: str, label: str) -> str:
    return f'<span class="badge s-{_css_name(status)}">{escape(label)}</span>'


def _breakable(identifier: str) -> str:
    """Escape a long SNAKE_CASE name and let the browser wrap it after underscores."""
    return escape(identifier).replace("_", "_<wbr>")


def _row(
    now: float,
    state: ProjectState,
    *,
    show_oms: bool,
    interval: float,
    max_lag: dict[str, float],
) -> str:
    progress = state.progress
    status = status_text(state)
    shown = status
    if progress is not None and progress.raw_status and progress.raw_status.upper() != status:
        shown = f"{status} ({_clip(progress.raw_status, _MAX_RAW)})"
    badge = _badge(status, shown)
    if progress is not None and not state.up:
        badge += '<br><small class="muted">last known</small>'
    if state.up:
        poll = '<span class="up">up</span>'
    elif state.last_error_reason is None:
        poll = '<span class="muted">waiting</span>'
    else:
        poll = '<span class="down">down</span>'
    error = ""
    if not state.up and state.last_error_reason is not None:
        message = state.last_error_message
        error = f"<strong>{escape(state.last_error_reason.value)}</strong>: "
        if len(message) > _MAX_ERROR:  # the whole message (within reason) on hover
            error += f'<span title="{escape(_clip(message, 2000))}">'
            error += f"{escape(_clip(message, _MAX_ERROR))}</span>"
        else:
            error += escape(message)
    name = progress.name if progress is not None else None
    project = escape(state.project_id)
    if name:
        project += f'<br><small class="muted">{escape(_clip(name, _MAX_NAME))}</small>'
    step = progress.current_step if progress is not None else None
    lag_limit = max_lag.get(state.oms, DEFAULT_MAX_LAG_SECONDS)
    cells = [
        f'<th scope="row">{project}</th>',
        f"<td>{badge}</td>",
        f'<td class="step">{_breakable(step)}</td>' if step else f"<td>{_NONE}</td>",
        f"<td>{_bar(progress.struct_progress_ratio if progress else None)}</td>",
        f"<td>{_bar(progress.full_progress_ratio if progress else None)}</td>",
        f"<td>{_lag(now, state)}</td>",
        f'<td class="cutover">{_cutover(now, state, interval=interval, max_lag=lag_limit)}</td>',
        f'<td class="nowrap">{_age(now, state.last_success_seconds)}</td>',
        f"<td>{poll}</td>",
        f'<td class="error">{error}</td>',
    ]
    if show_oms:
        cells.insert(1, f"<td>{escape(state.oms)}</td>")
    row_class = ' class="down-row"' if _priority(state) == 0 else ""
    return f"<tr{row_class}>{''.join(cells)}</tr>"


HEADERS: Final = (
    "Project",
    "Status",
    "Step",
    "Structure",
    "Full data",
    "Incremental lag",
    "Cut-over",
    "Last success",
    "Poll",
    "Error",
)


def _public_url(url: str) -> str:
    """Scheme, host, port and path only: never a query string or fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _summary(states: Sequence[ProjectState], *, first_round_done: bool) -> str:
    up = sum(1 for state in states if state.up)
    down = sum(1 for state in states if not state.up and state.last_error_reason is not None)
    waiting = len(states) - up - down
    counts = Counter(status_text(state) for state in states)
    order = [*ALL_STATUSES, NO_DATA, PENDING]
    by_status = " ".join(
        f"{_badge(status, status)}&nbsp;{counts[status]:,}" for status in order if counts[status]
    )
    poll = f'<span class="up">{up:,} up</span> · <span class="down">{down:,} down</span>'
    if waiting:
        poll += f" · {waiting:,} waiting for their first poll"
    if not first_round_done:
        poll += (
            f" · first poll round in progress: {len(states) - waiting:,} of {len(states):,} done"
        )
    return (
        f"<p><strong>{len(states):,} projects</strong>: {poll}</p>"
        f"<p>By status: {by_status or 'none yet'}</p>"
    )


def render_page(
    config: ExporterConfig,
    states: Sequence[ProjectState],
    *,
    now: float | None = None,
    max_rows: int = MAX_ROWS,
    first_round_done: bool = True,
) -> str:
    """The whole HTML page for these project states."""
    now = time.time() if now is None else now
    shown = sorted(states, key=_priority)[:max_rows]  # stable: configured order within a rank
    hidden = len(states) - len(shown)
    # One OMS is named above the table; with several, each row says which one.
    show_oms = len(config.targets) > 1
    headers = [HEADERS[0], "OMS", *HEADERS[1:]] if show_oms else list(HEADERS)
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    max_lag = {target.name: target.cutover_max_lag_seconds for target in config.targets}
    interval = config.poll_interval_seconds
    rows = "".join(
        _row(now, state, show_oms=show_oms, interval=interval, max_lag=max_lag) for state in shown
    )
    if not rows:
        rows = f'<tr><td colspan="{len(headers)}">No projects yet.</td></tr>'
    caption = "Projects, down and failed first"
    note = ""
    if hidden:
        caption += f" (showing {len(shown):,} of {len(states):,})"
        note = (
            f'<p class="hidden-note"><strong>{hidden:,} more projects are not shown</strong> '
            f"to keep this page small; every project is on "
            f'<a href="/metrics">/metrics</a>.</p>'
        )
    targets = ", ".join(
        f"<code>{escape(target.name)}</code> ({escape(_public_url(target.url))})"
        for target in config.targets
    )
    refresh = max(5, min(60, round(config.poll_interval_seconds)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta http-equiv="refresh" content="{refresh}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OMS exporter: {len(states):,} projects</title><style>{_style()}</style></head>
<body><main><h1>OMS exporter</h1>
{_summary(states, first_round_done=first_round_done)}
<p class="muted">Version {escape(__version__)} · OMS {targets} · polled every
{config.poll_interval_seconds:g} s · page refreshes every {refresh} s · rendered {_utc(now)}</p>
<p><a href="/metrics">Metrics</a> · <a href="/healthz">Health</a> ·
<a href="/readyz">Readiness</a></p>
{note}<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody></table>
</main></body></html>
"""


def render_landing(exporter: Exporter) -> str:
    return render_page(
        exporter.config,
        list(exporter.store),
        first_round_done=exporter.poller.first_round_done.is_set(),
    )
