"""The status page at /: escaping, no secrets, size limits, contrast, and a real browser.

The browser test runs Debian's headless Chromium against the real simulator and
exporter processes and keeps a screenshot in test-artifacts/status-page.png.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from dataclasses import replace
from html import escape
from pathlib import Path

import pytest

from oms_exporter import landing
from oms_exporter.config import ExporterConfig, build_config
from oms_exporter.landing import render_page
from oms_exporter.model import (
    ALL_STATUSES,
    MAX_WORST_TABLES,
    VERIFY_RESULTS,
    Api,
    Checkpoint,
    FullVerification,
    Kind,
    ProjectDetails,
    ProjectProgress,
    Reason,
    Step,
    VerifiedTable,
)
from oms_exporter.settings import Settings
from oms_exporter.store import ProjectState
from tests import status_page_support
from tests.processes import SIM_PASSWORD, exporter, get, simulator, wait_for
from tests.status_page_support import (
    ARTIFACTS,
    PNG_SIGNATURE,
    PageParser,
    contrast_ratio,
    dump_dom,
    normalise_colour,
    parse_page,
    png_size,
    require_chromium,
    screenshot,
)
from tests.test_end_to_end import DEMO

PASSWORD = 'Pa55-"zq8Wx"-<k9v>&Lm3'
HOSTILE_ID = "<script>alert(1)</script>\"'&amp;<img src=x onerror=alert(2)>"
HOSTILE_NAME = '</td></tr><tr><td>"forged" & <b onmouseover=alert(3)>name</b>'
HOSTILE_ERROR = "OMS said <iframe src=//evil.example></iframe> & 'quoted' \"text\""
HOSTILE_OMS = '<oms a="1">&'
DASH = "\N{EN DASH}"  # what the page shows for "does not apply"
HOSTILE_TABLE = '<img src=x onerror=alert(4)>"orders"&amp;'
HEADERS = [
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
]
# What the page may contain; anything else (script, img, iframe, object, form...) is injected.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "p", "a", "strong",
    "code", "span", "small", "br", "wbr", "table", "caption", "thead", "tbody", "tr", "th", "td",
    "details", "summary", "ul", "li",
}  # fmt: skip
NOW = 1_750_000_000.0


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep the developer's OMS_EXPORTER_* out."""
    for name in list(os.environ):
        if name.startswith("OMS_EXPORTER_"):
            monkeypatch.delenv(name)


def make_settings(**values: object) -> ExporterConfig:
    base: dict[str, object] = {
        "oms_url": "http://oms.example.internal:8089",
        "oms_username": "admin",
        "oms_password": PASSWORD,
        "project_ids": ["p1"],
    }
    return build_config(Settings(**{**base, **values}))  # type: ignore[arg-type]


def two_oms_settings() -> ExporterConfig:
    """Two OMS, one with a hostile name, one whose URL carries a query string."""
    a = {"name": HOSTILE_OMS, "url": "http://oms-a.example.internal:8089"}
    b = {"name": "oms-b", "url": "http://oms-b.example.internal:8089/base?token=QueryTok3n"}
    targets = [
        {**a, "username": "admin", "password": PASSWORD, "project_ids": ["p1"]},
        {**b, "username": "admin", "password": PASSWORD, "project_ids": ["p2"]},
    ]
    return build_config(Settings(targets=targets))  # type: ignore[arg-type]


def progress(
    project_id: str,
    status: str = "RUNNING",
    *,
    name: str = "",
    raw_status: str | None = None,
    step: str | None = "INCR_TRANSFER",
    full: float | None = 1.0,
    checkpoints: tuple[Checkpoint, ...] = (),
) -> ProjectProgress:
    return ProjectProgress(
        project_id=project_id,
        api=Api.V4,
        kind=Kind.MIGRATION,
        status=status,
        raw_status=raw_status if raw_status is not None else status,
        alarm_level="LOW",
        current_step=step,
        features={"struct": True, "full": True, "incr": True, "reverse_incr": False},
        struct_progress_ratio=1.0,
        full_progress_ratio=full,
        checkpoints=checkpoints,
        details=ProjectDetails(project_id=project_id, name=name),
    )


def verified(*tables: VerifiedTable, different: float = 0, count: int = 12) -> FullVerification:
    by_result = dict.fromkeys(VERIFY_RESULTS, 0)
    for table in tables:
        by_result[table.result] += 1
    by_result["CONSISTENT"] += count - len(tables)
    return FullVerification(
        different_rows=different,
        rows={"consistent": 1e6, "mismatched": different, "source_only": 0, "dest_only": 0},
        tables_by_result=by_result,
        table_count=count,
        worst_tables=tables,
    )


def hostile_verification() -> FullVerification:
    bad = VerifiedTable(
        "<b>shop</b>", HOSTILE_TABLE, "d&d", "INCONSISTENT", "FINISHED", 1.0, mismatched_rows=17
    )
    running = VerifiedTable("shop", "audit", "shop", "RUNNING", "RUNNING", 0.4)
    return verified(bad, running, different=17)


def ready_migration(project_id: str, **changes: object) -> ProjectProgress:
    """A migration with nothing blocking its cut-over, 3 s behind, verified consistent."""
    steps = tuple(
        Step(name, status, 1.0)
        for name, status in (
            ("STRUCT_TRANSFER", "FINISHED"),
            ("FULL_TRANSFER", "FINISHED"),
            ("FULL_VERIFIER", "FINISHED"),
            ("INCR_TRANSFER", "MONITORING"),
        )
    )
    base = progress(project_id, checkpoints=(Checkpoint("forward", NOW - 3, "x"),))
    values: dict[str, object] = {
        "features": {**base.features, "full_verify": True},
        "steps": steps,
        "verification": verified(),
        **changes,
    }
    return replace(base, **values)  # type: ignore[arg-type]


def up(oms: str, project_id: str, prog: ProjectProgress) -> ProjectState:
    return ProjectState(oms, project_id, progress=prog, up=True, last_success_seconds=NOW - 5)


def down(
    oms: str, project_id: str, message: str, prog: ProjectProgress | None = None
) -> ProjectState:
    return ProjectState(
        oms,
        project_id,
        progress=prog,
        up=False,
        last_success_seconds=None if prog is None else NOW - 300,
        last_error_reason=Reason.NOT_FOUND if prog is None else Reason.HTTP,
        last_error_message=message,
    )


def hostile_states() -> list[ProjectState]:
    oms = HOSTILE_OMS
    checkpoint = Checkpoint("forward", None, "<b>raw</b>&checkpoint")
    return [
        up(
            "oms-b",
            "np_running",
            replace(
                progress("np_running", name=HOSTILE_NAME, checkpoints=(checkpoint,)),
                verification=hostile_verification(),
            ),
        ),
        up(
            oms,
            "np_odd",
            progress(
                "np_odd",
                "UNKNOWN",
                raw_status="<i>weird</i>&",
                step="<u>STEP</u>",
                checkpoints=(Checkpoint("reverse", NOW - 42, "x"),),
            ),
        ),
        down(oms, HOSTILE_ID, HOSTILE_ERROR),
        down(oms, "np_stale", HOSTILE_ERROR, progress("np_stale", "FAILED", full=0.426)),
        ProjectState(oms, "np_pending"),
    ]


def assert_nothing_injected(page: PageParser) -> None:
    for element in page.elements:
        assert element.tag in ALLOWED_TAGS, f"unexpected <{element.tag}> in the page"
        for attribute in element.attrs:
            assert not attribute.startswith("on"), f"event handler {attribute} on <{element.tag}>"
        assert "src" not in element.attrs, f"<{element.tag}> loads {element.attrs['src']}"
        href = element.attrs.get("href")
        if href is not None:
            assert href.startswith("/"), href
            assert not href.startswith("//"), href


def assert_accessible_table(page: PageParser, headers: list[str] = HEADERS) -> None:
    assert page.headers == headers
    assert all(cell.tag == "th" and cell.attrs.get("scope") == "col" for cell in page.header)
    assert page.caption.strip()
    for row in page.rows:
        assert row[0].tag == "th"
        assert row[0].attrs.get("scope") == "row"
        assert len(row) == len(headers)


# ---------------------------------------------------------------- rendering, fast


def test_hostile_values_are_escaped_and_no_secret_is_shown(clean_env: None) -> None:
    settings = two_oms_settings()
    html = render_page(settings, hostile_states(), now=NOW)
    page = parse_page(html)

    assert_nothing_injected(page)
    assert_accessible_table(page, [HEADERS[0], "OMS", *HEADERS[1:]])
    for secret in (PASSWORD, escape(PASSWORD), "Pa55", "zq8Wx", "k9v", "Lm3", "QueryTok3n"):
        assert secret not in html
    assert "<script" not in html
    assert "<iframe" not in html
    assert "<oms" not in html

    assert page.project_order == [HOSTILE_ID, "np_stale", "np_odd", "np_pending", "np_running"]
    rows = page.projects()
    # Decoded by a parser, each hostile value reads back exactly as it was: escaped once.
    hostile = rows[HOSTILE_ID]
    assert hostile["OMS"].text == HOSTILE_OMS
    assert hostile["Status"].text == landing.NO_DATA
    assert hostile["Poll"].text == "down"
    assert hostile["Error"].text == f"not_found: {HOSTILE_ERROR}"
    assert rows["np_running"]["Project"].lines[1].strip() == HOSTILE_NAME
    assert rows["np_running"]["OMS"].text == "oms-b"
    assert rows["np_running"]["Incremental lag"].text == "forward: checkpoint <b>raw</b>&checkpoint"
    cutover = rows["np_running"]["Cut-over"]
    assert [line.strip() for line in cutover.lines] == [
        "not ready",
        "incremental sync not steady, lag too high",
        "Verification: 17 rows differ; 2 of 12 tables to look at",
        f"<b>shop</b>.{HOSTILE_TABLE} → d&d: INCONSISTENT, 17 different rows",
        "shop.audit → shop: RUNNING (RUNNING, 40%)",
    ]
    odd = rows["np_odd"]
    assert odd["Status"].text == "UNKNOWN (<i>weird</i>&)"
    assert odd["Step"].text == "<u>STEP</u>"
    assert odd["Incremental lag"].text == "reverse: 42 s"
    stale = rows["np_stale"]
    assert stale["Status"].text == "FAILED last known"
    assert stale["Full data"].text == "42%"
    assert stale["Last success"].text == "5 min ago"
    assert stale["Error"].text == f"http: {HOSTILE_ERROR}"
    pending = rows["np_pending"]
    assert pending["Status"].text == landing.PENDING
    assert pending["Poll"].text == "waiting"
    assert pending["Last success"].text == "never"
    assert pending["Error"].text == ""
    assert pending["Cut-over"].text == DASH

    text = page.text
    assert "5 projects: 2 up · 2 down · 1 waiting for their first poll" in text
    assert "RUNNING 1" in text
    assert "FAILED 1" in text
    assert f"{landing.NO_DATA} 1" in text
    assert f"OMS {HOSTILE_OMS} (http://oms-a.example.internal:8089)" in text
    assert "oms-b (http://oms-b.example.internal:8089/base)" in text


def test_cut_over_column_says_ready_or_the_blockers_for_migrations_only(clean_env: None) -> None:
    many = tuple(
        VerifiedTable("db", f"t{i:02d}", "db", "INCONSISTENT", "FINISHED", 1.0, mismatched_rows=i)
        for i in range(25, 0, -1)  # worst first, as the client keeps them
    )
    lagging = Checkpoint("forward", NOW - 45, "x")
    states = [
        up("oms", "np_ready", ready_migration("np_ready")),
        up(
            "oms",
            "np_blocked",
            ready_migration("np_blocked", verification=verified(*many, different=325, count=40)),
        ),
        up("oms", "np_lagging", ready_migration("np_lagging", checkpoints=(lagging,))),
        up("oms", "np_sync", replace(ready_migration("np_sync"), kind=Kind.SYNC)),
        up("oms", "np_no_incr", replace(progress("np_no_incr"), features={"incr": False})),
        replace(
            up("oms", "np_down", ready_migration("np_down")),
            up=False,
            last_error_reason=Reason.TIMEOUT,
            last_error_message="timeout",
        ),
    ]
    html = render_page(make_settings(poll_interval=30, oms_name="oms"), states, now=NOW)
    page = parse_page(html)
    assert_nothing_injected(page)
    assert_accessible_table(page)
    rows = page.projects()
    assert rows["np_ready"]["Cut-over"].text == "ready"
    blocked = rows["np_blocked"]["Cut-over"]
    assert blocked.lines[0].strip() == "not ready"
    assert blocked.lines[1].strip() == "verification found differences"
    titles = [
        e.attrs.get("title") for e in page.elements if e.tag == "span" and e.attrs.get("title")
    ]
    assert (
        "325 different rows in 40 tables, 25 tables neither consistent nor empty on both sides"
        in titles
    )
    assert blocked.lines[2].strip() == "Verification: 325 rows differ; 20 of 40 tables to look at"
    shown = [line.strip() for line in blocked.lines[3:]]
    assert len(shown) == MAX_WORST_TABLES
    assert shown[0] == "db.t25 → db: INCONSISTENT, 25 different rows"
    assert rows["np_lagging"]["Cut-over"].text == "not ready lag too high"
    assert "lag 40 s at the last poll, of at most 30 s" in titles  # polled 5 s ago
    assert rows["np_sync"]["Cut-over"].text.startswith(DASH)  # no cut-over; its tables still shown
    assert rows["np_no_incr"]["Cut-over"].text == DASH
    assert rows["np_down"]["Cut-over"].text == "not ready no recent poll"
    # A target may allow more lag: 45 s is then fine.
    relaxed_settings = make_settings(poll_interval=30, oms_name="oms", cutover_max_lag=60)
    relaxed = render_page(relaxed_settings, states, now=NOW)
    assert parse_page(relaxed).projects()["np_lagging"]["Cut-over"].text == "ready"


def test_page_basics_lang_refresh_no_external_assets(clean_env: None) -> None:
    settings = make_settings(poll_interval=30, oms_name="oms-one")
    html = render_page(settings, hostile_states(), now=NOW)
    page = parse_page(html)

    assert html.startswith("<!DOCTYPE html>")
    assert_accessible_table(page)  # one OMS: named above the table, no OMS column
    assert "OMS oms-one (http://oms.example.internal:8089)" in page.text
    assert page.elements[0].tag == "html"
    assert page.elements[0].attrs.get("lang") == "en"
    metas = [e.attrs for e in page.elements if e.tag == "meta"]
    assert {"http-equiv": "refresh", "content": "30"} in metas
    assert {"charset": "utf-8"} in metas
    csp = next(m["content"] for m in metas if m.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # falls back to default-src 'none': no script runs at all
    # No URL to anywhere else: links are relative, nothing is loaded, no CSS import or url().
    assert_nothing_injected(page)
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style
    assert "@import" not in style
    assert [e.attrs["href"] for e in page.elements if e.tag == "a"] == [
        "/metrics",
        "/healthz",
        "/readyz",
    ]
    # The refresh follows the poll interval, within 5..60 s.
    for interval, expected in ((1, "5"), (3600, "60")):
        faster = parse_page(render_page(make_settings(poll_interval=interval), [], now=NOW))
        assert {"http-equiv": "refresh", "content": expected} in [
            e.attrs for e in faster.elements if e.tag == "meta"
        ]


def test_many_projects_show_problems_first_and_a_capped_table(clean_env: None) -> None:
    total = 10_000
    states = [up("oms", f"p_{i:05d}", progress(f"p_{i:05d}")) for i in range(total - 10)]
    states += [down("oms", f"p_down_{i}", "timeout") for i in range(5)]
    states += [up("oms", f"p_failed_{i}", progress(f"p_failed_{i}", "FAILED")) for i in range(5)]
    settings = make_settings(project_ids=[s.project_id for s in states])

    started = time.perf_counter()
    html = render_page(settings, states, now=NOW)
    elapsed = time.perf_counter() - started
    page = parse_page(html)

    assert elapsed < 2, f"rendering {total} projects took {elapsed:.2f}s"
    assert len(html) < 1_000_000
    assert len(page.rows) == landing.MAX_ROWS
    ids = page.project_order
    assert ids[:10] == [f"p_down_{i}" for i in range(5)] + [f"p_failed_{i}" for i in range(5)]
    assert ids[10:] == [f"p_{i:05d}" for i in range(landing.MAX_ROWS - 10)]
    text = page.text
    assert "9,500 more projects are not shown" in text
    assert "/metrics" in text
    assert "showing 500 of 10,000" in page.caption
    assert "10,000 projects: 9,995 up · 5 down" in text
    assert "RUNNING 9,990" in text
    assert "FAILED 5" in text


def test_colours_meet_wcag_aa_contrast(clean_env: None) -> None:
    failures = []
    for role, text in landing.TEXT_COLOURS.items():
        for place, background in landing.BACKGROUNDS.items():
            ratio = contrast_ratio(text, background)
            if ratio < 4.5:
                failures.append(f"{role} text {text} on {place} {background}: {ratio:.2f}")
    for status, (text, background) in landing.STATUS_COLOURS.items():
        ratio = contrast_ratio(text, background)
        if ratio < 4.5:
            failures.append(f"{status} badge {text} on {background}: {ratio:.2f}")
    fill, track = landing.BAR_COLOURS
    if contrast_ratio(fill, track) < 3:  # WCAG 1.4.11, non-text
        failures.append(f"bar {fill} on {track}: {contrast_ratio(fill, track):.2f}")
    assert not failures, failures

    # Every status has its badge colours, and the page uses no colour the checks above miss.
    assert set(ALL_STATUSES) <= set(landing.STATUS_COLOURS)
    palette = {
        *landing.TEXT_COLOURS.values(),
        *landing.BACKGROUNDS.values(),
        *(c for pair in landing.STATUS_COLOURS.values() for c in pair),
        *landing.BAR_COLOURS,
        landing.BORDER,
    }
    html = render_page(make_settings(), hostile_states(), now=NOW)
    used = {normalise_colour(c) for c in re.findall(r"#[0-9a-fA-F]{3,6}\b", html)}
    assert used <= {normalise_colour(c) for c in palette}, used - palette
    assert not re.search(r"\b(rgb|hsl)a?\(", html)


# ---------------------------------------------------------------- a real browser


def sim_projects(url: str) -> dict[str, dict[str, object]]:
    with urllib.request.urlopen(url + "/_sim/projects", timeout=5) as response:  # noqa: S310
        return {p["id"]: p for p in json.loads(response.read())["projects"]}


def test_missing_chromium_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(status_page_support, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"Debian package chromium.*make test"):
        status_page_support.require_chromium()


def test_status_page_in_headless_chromium() -> None:
    require_chromium()  # fails, with how to install it, before starting anything
    demo = [*DEMO, "np_demo_lag_spikes", "np_demo_inconsistent"]
    with simulator() as oms, exporter(oms.url, [*demo, HOSTILE_ID]) as exp:

        def settled() -> bool:
            status, html = get(exp.url + "/")
            if status != 200:
                return False
            rows = parse_page(html).projects()
            return (
                set(rows) == {*demo, HOSTILE_ID}
                and all(rows[p]["Poll"].text == "up" for p in demo)
                and rows[HOSTILE_ID]["Poll"].text == "down"
            )

        wait_for(settled, timeout=20)
        before = sim_projects(oms.url)
        shot = ARTIFACTS / "status-page.png"
        screenshot(exp.url + "/", shot)
        dom = dump_dom(exp.url + "/")
        after = sim_projects(oms.url)
        (ARTIFACTS / "status-page.html").write_text(dom, encoding="utf-8")

    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    assert png_size(shot) == (1400, 900)

    page = parse_page(dom)
    assert_nothing_injected(page)
    assert_accessible_table(page)
    assert SIM_PASSWORD not in dom
    rows = page.projects()
    assert set(rows) == {*demo, HOSTILE_ID}
    for project in demo:
        row = rows[project]
        # What the simulator reported just before and just after the browser looked.
        truth = (before[project], after[project])
        assert row["Status"].text in {str(t["status"]) for t in truth}, (project, truth)
        assert row["Project"].lines[1].strip() in {str(t["name"]) for t in truth}, project
        assert row["Step"].text in {str(t["current_step"]) for t in truth}, (project, truth)
        assert row["Poll"].text == "up", project
        assert row["Error"].text == "", project
    assert rows["np_demo_failed"]["Status"].text == "FAILED"
    assert rows["np_demo_suspended"]["Status"].text == "SUSPEND"
    assert rows["np_demo_finished"]["Status"].text == "FINISHED"
    assert rows["np_demo_finished"]["Full data"].text == "100%"
    assert rows["np_demo_failed"]["Full data"].text == "42%"
    assert re.fullmatch(r"forward: \d+ (s|min)", rows["np_demo_sync"]["Incremental lag"].text)
    # Cut-over: a dash for a sync; the found differences, and the tables, for a migration.
    assert rows["np_demo_sync"]["Cut-over"].text == DASH
    inconsistent = [line.strip() for line in rows["np_demo_inconsistent"]["Cut-over"].lines]
    assert inconsistent[:2] == ["not ready", "verification found differences"]
    assert inconsistent[2] == "Verification: 17 rows differ; 2 of 8 tables to look at"
    assert len(inconsistent) == 5
    # The hostile ID is plain text in its own row, down with the simulator's not_found.
    hostile = rows[HOSTILE_ID]
    assert hostile["Status"].text == landing.NO_DATA
    assert hostile["Poll"].text == "down"
    assert hostile["Error"].text.startswith("not_found: ")
    # Problems first: the down project, then the failed one.
    assert page.project_order[:2] == [HOSTILE_ID, "np_demo_failed"]
    assert f"{len(demo) + 1} projects: {len(demo)} up · 1 down" in page.text
