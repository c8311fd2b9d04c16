"""The page at /: what a person without Grafana needs, server-rendered, no external assets.

Every value that came from configuration or OMS is escaped; no secret is ever passed in.
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Final

from oms_exporter import __version__
from oms_exporter.store import ProjectState

if TYPE_CHECKING:
    from oms_exporter.runtime import Exporter

# Text and background pairs chosen for a contrast ratio of at least 4.5:1.
_STATUS_COLOURS: Final = {
    "RUNNING": ("#0b5d1e", "#d8f3dc"),
    "FINISHED": ("#1d3557", "#dbe9f6"),
    "FAILED": ("#8b0000", "#fde2e1"),
    "SUSPEND": ("#7a4d00", "#fff1c1"),
}
_DEFAULT_COLOURS: Final = ("#333333", "#eeeeee")
_NONE: Final = "&ndash;"

_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a1a1a;background:#fff}
table{border-collapse:collapse;width:100%}th,td{padding:.35rem .6rem;border-bottom:1px solid #ccc;
text-align:left;vertical-align:middle}th{background:#f2f2f2}
.badge{padding:.1rem .45rem;border-radius:.3rem;font-weight:600;font-size:.9em}
.bar{width:8rem;height:.8rem;background:#e0e0e0;border-radius:.2rem;display:inline-block}
.bar span{display:block;height:100%;background:#2b6cb0;border-radius:.2rem}
.down{color:#8b0000;font-weight:600}.up{color:#0b5d1e;font-weight:600}
""".replace("\n", "")


def _age(now: float, then: float | None) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, now - then)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _bar(ratio: float | None) -> str:
    if ratio is None:
        return _NONE
    percent = ratio * 100
    return (
        f'<span class="bar" role="img" aria-label="{percent:.0f}%">'
        f'<span style="width:{percent:.0f}%"></span></span> {percent:.0f}%'
    )


def _lag(now: float, state: ProjectState) -> str:
    if state.progress is None:
        return _NONE
    parts = []
    for point in state.progress.checkpoints:
        if point.seconds is None:
            parts.append(f"{escape(point.direction)}: {escape(point.raw) or 'none'}")
        else:
            parts.append(f"{escape(point.direction)}: {max(0.0, now - point.seconds):.0f} s")
    return "<br>".join(parts) or _NONE


def _row(now: float, state: ProjectState) -> str:
    progress = state.progress
    status = progress.status if progress else "UNKNOWN"
    fg, bg = _STATUS_COLOURS.get(status, _DEFAULT_COLOURS)
    raw = escape(progress.raw_status or status) if progress else "not polled yet"
    poll = '<span class="up">up</span>' if state.up else '<span class="down">down</span>'
    reason = ""
    if not state.up and state.last_error_reason is not None:
        reason = f"{escape(state.last_error_reason.value)}: {escape(state.last_error_message)}"
    name = escape(progress.name) if progress and progress.name else ""
    cells = [
        f"{escape(state.project_id)}<br><small>{name}</small>",
        escape(state.oms),
        f'<span class="badge" style="color:{fg};background:{bg}">{raw}</span>',
        escape(progress.current_step) if progress and progress.current_step else _NONE,
        _bar(progress.struct_progress_ratio if progress else None),
        _bar(progress.full_progress_ratio if progress else None),
        _lag(now, state),
        _age(now, state.last_success_seconds),
        poll,
        reason,
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def render_landing(exporter: Exporter) -> str:
    now = time.time()
    settings = exporter.settings
    states = list(exporter.store)
    up = sum(1 for state in states if state.up)
    headers = [
        "Project",
        "OMS",
        "Status",
        "Step",
        "Structure",
        "Full data",
        "Incremental lag",
        "Last success",
        "Poll",
        "Error",
    ]
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    rows = "".join(_row(now, state) for state in states)
    targets = ", ".join(
        f"<code>{escape(target.label)}</code> ({escape(target.url)})"
        for target in settings.oms_targets()
    )
    refresh = max(5, min(60, round(settings.poll_interval)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OMS exporter</title><style>{_STYLE}</style></head>
<body><h1>OMS exporter</h1>
<p>Version {escape(__version__)} · OMS {targets} ·
{len(states)} projects, {up} up · polled every {settings.poll_interval:g} s</p>
<p><a href="/metrics">Metrics</a> · <a href="/healthz">Health</a> ·
<a href="/readyz">Readiness</a></p>
<table><caption>Projects</caption><thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""
