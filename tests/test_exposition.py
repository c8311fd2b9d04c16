"""Golden exposition text for known snapshots, lag at scrape time, staleness, format checks."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_om
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from oms_exporter import collector as collector_module
from oms_exporter.collector import BLOCK_PROJECTS, ProjectCollector
from oms_exporter.families import (
    LAG_FAMILY_NAME,
    LAG_HELP,
    PROJECT_FAMILIES,
    SKEW_FAMILY_NAME,
    SKEW_HELP,
    Family,
    header,
)
from oms_exporter.gzipbody import KeptText, gzip_pieces, units_of
from oms_exporter.metricfilter import MetricFilter
from oms_exporter.model import (
    Api,
    Checkpoint,
    FullTransfer,
    Kind,
    ProjectDetails,
    ProjectProgress,
    Reason,
    Step,
)
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.store import Store
from oms_exporter.web import generate_latest

NOW = 1_800_000_000.0
GOLDEN = Path(__file__).parent / "golden"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def progress(project_id: str = "np_1", **changes: object) -> ProjectProgress:
    values: dict[str, object] = {
        "project_id": project_id,
        "api": Api.V4,
        "kind": Kind.MIGRATION,
        "status": "RUNNING",
        "raw_status": "RUNNING",
        "alarm_level": "HIGH",
        "current_step": "FULL_TRANSFER",
        "features": {"struct": True, "full": True, "incr": True, "reverse_incr": False},
        "struct_progress_ratio": 1.0,
        "full_progress_ratio": 0.37,
        "checkpoints": (Checkpoint("forward", NOW - 42, str(int(NOW - 42))),),
    }
    values.update(changes)
    return ProjectProgress(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> Store:
    store = Store()
    store.set_projects("oms-a:8089", ["np_1"])
    return store


@pytest.fixture
def collector(store: Store, clock: Clock) -> ProjectCollector:
    return ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock)


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_golden_body_for_a_running_migration_and_a_project_not_polled_yet(
    store: Store, collector: ProjectCollector
):
    """The whole body, byte for byte: a pending project publishes nothing, not `up 0`."""
    store.set_projects("oms-a:8089", ["np_1", "np_pending"])
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW - 5)
    assert collector.render().decode() == GOLDEN.joinpath("running_migration.prom").read_text()


def test_help_says_how_often_values_are_polled(store: Store, collector: ProjectCollector):
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    text = collector.render().decode()
    assert "# HELP oms_project_up 1 if the last poll of this project succeeded, else 0. " in text
    assert "Polled every 30 seconds." in text


def test_lag_is_computed_at_scrape_time(store: Store, collector: ProjectCollector, clock: Clock):
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    clock.now = NOW + 60  # OMS froze: no new poll, the lag keeps growing
    assert 'direction="forward"} 102.000' in collector.render().decode()


def test_checkpoint_ahead_gives_zero_lag_and_reports_skew(
    store: Store, collector: ProjectCollector
):
    ahead = (Checkpoint("forward", NOW + 300, ""),)
    store.record_success("oms-a:8089", "np_1", progress(checkpoints=ahead), now=NOW)
    lines = samples(collector.render().decode())
    assert any(
        line.startswith("oms_project_incr_sync_lag_seconds") and line.endswith(" 0.000")
        for line in lines
    )
    assert 'oms_clock_skew_seconds{oms="oms-a:8089"} 300.0' in lines


def test_non_numeric_checkpoint_publishes_no_lag_but_everything_else(
    store: Store, collector: ProjectCollector
):
    sybase = (Checkpoint("forward", None, "100,30"),)
    store.record_success("oms-a:8089", "np_1", progress(checkpoints=sybase), now=NOW)
    text = collector.render().decode()
    assert "oms_project_incr_sync_lag_seconds{" not in text
    assert "oms_project_incr_sync_checkpoint_timestamp_seconds{" not in text
    assert "oms_project_full_progress_ratio{" in text


def test_failing_project_is_down_with_reason_and_keeps_values_until_stale(
    store: Store, collector: ProjectCollector, clock: Clock
):
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    store.record_failure("oms-a:8089", "np_1", Reason.TIMEOUT, "no answer")
    store.record_failure("oms-a:8089", "np_1", Reason.TIMEOUT, "no answer")
    clock.now = NOW + 60
    text = collector.render().decode()
    assert 'oms_project_up{oms="oms-a:8089",project_id="np_1"} 0.0' in text
    assert (
        'oms_project_poll_errors_total{oms="oms-a:8089",project_id="np_1",reason="timeout"} 2.0'
        in text
    )
    assert "oms_project_full_progress_ratio{" in text
    assert 'direction="forward"} 102.000' in text  # still growing, never frozen
    clock.now = NOW + 91
    text = collector.render().decode()
    for dropped in (
        "oms_project_full_progress_ratio{",
        "oms_project_incr_sync_checkpoint_timestamp_seconds{",
        "oms_project_incr_sync_lag_seconds{",
    ):
        assert dropped not in text
    for kept in ("oms_project_up{", "oms_project_status{", "oms_project_poll_errors_total{"):
        assert kept in text


def test_project_never_polled_successfully_shows_only_up_and_errors(
    store: Store, collector: ProjectCollector
):
    store.record_failure("oms-a:8089", "np_1", Reason.NOT_FOUND, "gone")
    names = {
        line.split("{")[0] for line in samples(collector.render().decode()) if "project_id" in line
    }
    assert names == {"oms_project_up", "oms_project_poll_errors_total"}


def test_hostile_label_values_are_escaped(clock: Clock):
    store = Store()
    store.set_projects('o"m\\s', ['p"1\nx'])
    store.record_success('o"m\\s', 'p"1\nx', progress('p"1\nx'), now=NOW)
    text = (
        ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock)
        .render()
        .decode()
    )
    families = {family.name: family for family in parse_text(text)}
    sample = families["oms_project_up"].samples[0]
    assert sample.labels == {"oms": 'o"m\\s', "project_id": 'p"1\nx'}


def test_removed_projects_disappear(store: Store, collector: ProjectCollector):
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    assert "np_1" in collector.render().decode()
    store.set_projects("oms-a:8089", ["np_2"])
    text = collector.render().decode()
    assert "np_1" not in text
    assert "np_2" not in text  # not polled yet: nothing, rather than a false `up 0`
    store.record_failure("oms-a:8089", "np_2", Reason.TIMEOUT, "no answer")
    assert 'oms_project_up{oms="oms-a:8089",project_id="np_2"} 0.0' in collector.render().decode()


def full_body(store: Store, collector: ProjectCollector, *, openmetrics: bool) -> str:
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    metrics = SelfMetrics()
    own = generate_om(metrics.registry) if openmetrics else generate_latest(metrics.registry)
    return (collector.render(openmetrics=openmetrics) + own).decode()


def test_text_and_openmetrics_bodies_parse(store: Store, collector: ProjectCollector):
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    store.record_failure("oms-a:8089", "np_1", Reason.HTTP, "HTTP 502")
    text_families = {f.name for f in parse_text(full_body(store, collector, openmetrics=False))}
    om_families = {f.name: f for f in parse_om(full_body(store, collector, openmetrics=True))}
    assert {"oms_project_up", "oms_project_poll_errors", "oms_exporter_build_info"} <= text_families
    assert om_families["oms_project_poll_errors"].type == "counter"
    assert om_families["oms_project"].type == "info"


def test_promtool_accepts_the_exposition(store: Store, collector: ProjectCollector):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make test`, which installs Debian's prometheus"
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    store.record_failure("oms-a:8089", "np_1", Reason.HTTP, "HTTP 502")
    body = full_body(store, collector, openmetrics=False)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- HELP escaping, against prometheus_client's own output ---------------------------------

POLL_NOTE = "Polled every 30 seconds."


class OneFamily:
    """A collector of one sample-less family: prometheus_client then writes HELP and TYPE."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation

    def collect(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation)]


def help_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("# HELP "))


def prometheus_client_help_line(name: str, documentation: str, *, openmetrics: bool) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OneFamily(name, documentation))  # type: ignore[arg-type]
    body = generate_om(registry) if openmetrics else generate_latest(registry)
    return help_line(body.decode())


def no_samples(_state: object) -> tuple[()]:
    return ()


@pytest.mark.parametrize("openmetrics", [False, True])
def test_help_is_escaped_as_prometheus_client_escapes_it(openmetrics: bool):
    """Text: backslash and newline. OpenMetrics: those and the double quote."""
    family = Family("oms_test", 'a "quoted" \\ path\nand a second line.', "gauge", no_samples)
    ours = help_line(header(family, openmetrics=openmetrics, poll_note=POLL_NOTE))
    documentation = f"{family.help} {POLL_NOTE}"
    name = ours.split(" ")[2]
    assert ours == prometheus_client_help_line(name, documentation, openmetrics=openmetrics)
    assert ('\\"quoted\\"' in ours) is openmetrics


@pytest.mark.parametrize("openmetrics", [False, True])
def test_every_help_line_is_the_one_prometheus_client_would_write(openmetrics: bool):
    families = [
        *PROJECT_FAMILIES,
        Family(LAG_FAMILY_NAME, LAG_HELP, "gauge", no_samples),
        Family(SKEW_FAMILY_NAME, SKEW_HELP, "gauge", no_samples),
    ]
    for family in families:
        ours = help_line(header(family, openmetrics=openmetrics, poll_note=POLL_NOTE))
        name = ours.split(" ")[2]
        documentation = f"{family.help} {POLL_NOTE}"
        expected = prometheus_client_help_line(name, documentation, openmetrics=openmetrics)
        assert ours == expected, family.name


def test_denied_families_are_never_rendered_and_a_new_list_applies_to_every_project(
    store: Store, clock: Clock
):
    collector = ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30)
    collector.configure(
        stale_after_seconds=90,
        poll_interval_seconds=30,
        metric_filter=MetricFilter(deny=("oms_project_status", "oms_project_incr_sync_.*")),
    )
    store.record_success("oms-a:8089", "np_1", progress(), now=NOW)
    text = collector.render().decode()
    assert "oms_project_status{" not in text
    assert "oms_project_incr_sync_lag_seconds{" not in text
    assert "oms_project_incr_sync_checkpoint_timestamp_seconds{" not in text
    assert "oms_project_up{" in text
    # A reload to an allow list: every project is rendered again under the new list.
    collector.configure(
        stale_after_seconds=90,
        poll_interval_seconds=30,
        metric_filter=MetricFilter(allow=("oms_project_status", "oms_project_poll_errors_total")),
    )
    names = {family.name for family in parse_text(collector.render().decode())}
    assert names == {"oms_project_status"}  # no errors yet, so no error counter lines
    store.record_failure("oms-a:8089", "np_1", Reason.TIMEOUT, "no answer")
    names = {family.name for family in parse_text(collector.render().decode())}
    assert names == {"oms_project_status", "oms_project_poll_errors"}


def test_an_oms_name_from_a_non_utf8_environment_cannot_break_metrics(clock: Clock):
    """os.environ decodes invalid bytes to lone surrogates; /metrics must still encode."""
    store = Store()
    collector = ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30)
    name = b"oms-\xff".decode("utf-8", "surrogateescape")
    store.set_projects(name, ["np_1"])
    store.record_success(name, "np_1", progress(), now=NOW)
    text = collector.render().decode()
    assert 'oms_project_up{oms="oms-\ufffd",project_id="np_1"} 1.0' in text


# A 4.x migration in steady incremental sync, as OMS lists its 10 steps (ODC's names).
TEN_STEPS = (
    Step("TRANSFER_PRECHECK", "FINISHED", 1.0),
    Step("TRANSFER_PREPARE", "FINISHED", 1.0),
    Step("STRUCT_TRANSFER", "FINISHED", 1.0),
    Step("INDEX_TRANSFER", "FINISHED", 1.0),
    Step("FULL_TRANSFER", "FINISHED", 1.0, FullTransfer(2.06e6, 2e6, 0.0, 0.0, 0.0, 0.0)),
    Step("TRANSFER_INCR_LOG_PULL", "MONITORING", 1.0),
    Step("INCR_TRANSFER", "MONITORING", 1.0, checkpoint_sample=Checkpoint("forward", NOW - 2, "")),
    Step("INCR_VERIFIER", "MONITORING", 1.0),
    Step("TRANSFER_APP_SWITCH", "RUNNING", 0.0),
    Step("REVERSE_INCR_TRANSFER", "INIT", 0.0),
)
LISTED = ProjectDetails("np_1", name="orders", type="MIGRATION", alarming=False)


def project_samples(text: str, project_id: str) -> list[str]:
    return [line for line in samples(text) if f'project_id="{project_id}"' in line]


@pytest.mark.parametrize(("kind", "budget"), [(Kind.MIGRATION, 45), (Kind.SYNC, 35)])
def test_a_project_with_10_steps_stays_within_its_series_budget(
    store: Store, collector: ProjectCollector, kind: Kind, budget: int
):
    """Issue 15: at most 45 samples per project with 10 steps, cut-over lines included."""
    features = {"struct": True, "full": True, "incr": True, "reverse_incr": True}
    steady = progress(
        kind=kind, current_step="INCR_TRANSFER", features=features, steps=TEN_STEPS, details=LISTED
    )
    store.record_success("oms-a:8089", "np_1", steady, now=NOW - 5)
    lines = project_samples(collector.render().decode(), "np_1")
    assert len(lines) <= budget, "\n".join(lines)
    print(kind, len(lines))
    assert sum(line.startswith("oms_project_step_status{") for line in lines) == 10
    assert any(line.startswith("oms_project_cutover_blocked{") for line in lines) == (
        kind == Kind.MIGRATION
    )


def test_status_is_one_series_with_the_status_as_a_label(store: Store, collector: ProjectCollector):
    store.record_success("oms-a:8089", "np_1", progress(status="FAILED"), now=NOW)
    lines = [line for line in samples(collector.render().decode()) if "oms_project_status{" in line]
    assert lines == ['oms_project_status{oms="oms-a:8089",project_id="np_1",status="FAILED"} 1.0']


def test_step_progress_only_where_it_can_be_anything_but_0_or_1(
    store: Store, collector: ProjectCollector
):
    """FINISHED is 1, INIT 0, and MONITORING (steady incremental) reports 100 while it runs."""
    steps = (
        Step("STRUCT_TRANSFER", "FINISHED", 1.0),
        Step("FULL_TRANSFER", "FAILED", 0.61),
        Step("FULL_VERIFIER", "SUSPEND", 0.2),
        Step("INDEX_TRANSFER", "RUNNING", 0.5),
        Step("INCR_TRANSFER", "MONITORING", 1.0),
        Step("TRANSFER_APP_SWITCH", "INIT", 0.0),
        Step("SIM_NEW_STEP", "UNKNOWN", 0.3),
    )
    store.record_success("oms-a:8089", "np_1", progress(steps=steps), now=NOW)
    published = {
        line.split('step="')[1].split('"')[0]
        for line in samples(collector.render().decode())
        if line.startswith("oms_project_step_progress_ratio{")
    }
    assert published == {"FULL_TRANSFER", "FULL_VERIFIER", "INDEX_TRANSFER", "SIM_NEW_STEP"}


def test_readiness_lines_follow_the_clock_of_each_scrape(
    store: Store, collector: ProjectCollector, clock: Clock
):
    """The lines are kept between scrapes, but what holds is decided at each one."""
    features = {"struct": True, "full": True, "incr": True}
    checkpoint = (Checkpoint("forward", NOW - 3, str(int(NOW - 3))),)
    steady = progress(
        current_step="INCR_TRANSFER", features=features, steps=TEN_STEPS, checkpoints=checkpoint
    )
    store.record_success("oms-a:8089", "np_1", steady, now=NOW)

    def blocked() -> dict[str, float]:
        found = {}
        for line in samples(collector.render().decode()):
            if line.startswith("oms_project_cutover_blocked{"):
                found[line.split('blocker="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return found

    def ready() -> float:
        lines = samples(collector.render().decode())
        return next(float(line.rsplit(" ", 1)[1]) for line in lines if "cutover_ready{" in line)

    assert (ready(), sum(blocked().values())) == (1.0, 0.0)
    # Just before the next poll the checkpoint is 58 s older than the scrape, but it was
    # 3 s behind when OMS was asked: counting the poll's age made every healthy migration
    # not ready late in each interval (30 s of max lag, 30 s between polls).
    clock.now = NOW + 55
    assert (ready(), sum(blocked().values())) == (1.0, 0.0)
    clock.now = NOW + 61  # two intervals without a success: stale
    assert ready() == 0.0
    assert {name for name, value in blocked().items() if value} == {"stale"}
    clock.now = NOW + 199
    behind = replace(steady, checkpoints=(Checkpoint("forward", NOW + 140, ""),))
    store.record_success("oms-a:8089", "np_1", behind, now=NOW + 199)  # 59 s behind
    assert {name for name, value in blocked().items() if value} == {"lag"}
    caught_up = replace(steady, checkpoints=(Checkpoint("forward", NOW + 198, ""),))
    store.record_success("oms-a:8089", "np_1", caught_up, now=NOW + 199)
    assert (ready(), sum(blocked().values())) == (1.0, 0.0)


def test_a_checkpoint_appearing_decides_the_settled_checks_again(
    store: Store, collector: ProjectCollector
):
    """Only the checkpoint differs, but without steps it says whether incremental sync runs."""
    features = {"struct": True, "full": True, "incr": True}
    waiting = progress(
        current_step="INCR_TRANSFER",
        features=features,
        full_progress_ratio=1.0,
        checkpoints=(Checkpoint("forward", None, ""),),
    )

    def blocked() -> set[str]:
        return {
            line.split('blocker="')[1].split('"')[0]
            for line in samples(collector.render().decode())
            if line.startswith("oms_project_cutover_blocked{") and line.endswith(" 1.0")
        }

    store.record_success("oms-a:8089", "np_1", waiting, now=NOW)
    assert blocked() == {"incr_not_running", "lag"}
    running = replace(waiting, checkpoints=(Checkpoint("forward", NOW - 3, str(int(NOW - 3))),))
    store.record_success("oms-a:8089", "np_1", running, now=NOW)
    assert blocked() == set()


def family_samples(text: str) -> list[tuple[str, frozenset[str]]]:
    """The body's families in order, each with its samples (the order of projects aside)."""
    families: list[tuple[str, set[str]]] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            families.append((line.split()[2], set()))
        elif line and not line.startswith("#"):
            families[-1][1].add(line)
    return [(name, frozenset(lines)) for name, lines in families]


def test_kept_blocks_say_what_a_fresh_render_says_after_any_changes(clock: Clock):
    """Blocks of many projects, changed, failed, gone stale, removed and added, in any
    order: the body is always what a collector rendering everything afresh would send."""
    rng = random.Random(15)
    store = Store()
    ids = [f"np_{index:04d}" for index in range(10 * BLOCK_PROJECTS + 7)]
    store.set_projects("oms-a:8089", ids)
    kept = ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock)
    for project_id in ids:  # every block full and kept before anything changes
        store.record_success("oms-a:8089", project_id, progress(project_id), now=NOW)
    kept.render()
    for step in range(200):
        clock.now = NOW + step
        project_id = rng.choice(ids)
        roll = rng.random()
        if step == 100:  # a reload drops most projects: the blocks close up
            ids = ids[::3]
            store.set_projects("oms-a:8089", ids)
        elif roll < 0.6:
            point = Checkpoint("forward", NOW - rng.randrange(100), "")
            done = rng.choice([0.37, 1.0])
            answer = progress(project_id, checkpoints=(point,), full_progress_ratio=done)
            store.record_success("oms-a:8089", project_id, answer, now=clock.now)
        elif roll < 0.85:
            store.record_failure("oms-a:8089", project_id, Reason.TIMEOUT, "no answer")
        else:  # a reload drops a project and brings another
            ids = sorted(set(ids) ^ {rng.choice(ids), f"np_new_{step:04d}"})
            store.set_projects("oms-a:8089", ids)
        if step % 7 == 3:  # a round ended: rendered and deflated before the scrape
            asyncio.run(kept.prepare())
        if step % 10 == 9:
            clock.now += 100  # some failing projects are stale now
            fresh = ProjectCollector(
                store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock
            )
            expected = family_samples(fresh.render().decode())
            assert family_samples(kept.render().decode()) == expected
            # gzip: unchanged blocks are then kept as their segments alone, and inflated
            assert family_samples(gzipped(kept)) == expected


def gzipped(collector: ProjectCollector) -> str:
    """A gzip scrape's body, as the web layer makes it, inflated."""
    units = units_of(collector.render_parts())
    body = b"".join(asyncio.run(gzip_pieces(units)).pieces)
    return zlib.decompress(body, 31).decode()


def kept_texts(collector: ProjectCollector) -> dict[str, bytes]:
    """Each family's kept block (one project here), by family name."""
    return {
        part.text.split(b"{", 1)[0].decode(): part.text
        for part in collector.render_parts()
        if isinstance(part, KeptText) and part.text is not None
    }


def test_a_block_rendered_again_to_the_same_lines_keeps_its_text_and_deflate(
    store: Store, collector: ProjectCollector
):
    """A gzip scrape deflates a kept block once: a progress change that leaves a family's
    lines as they were must not make it deflate them again."""
    store.record_success("oms-a:8089", "np_1", progress(steps=TEN_STEPS), now=NOW)
    before = kept_texts(collector)
    moved = progress(steps=TEN_STEPS, full_progress_ratio=0.5)  # "more" than checkpoints
    store.record_success("oms-a:8089", "np_1", moved, now=NOW + 30)
    after = kept_texts(collector)
    assert after["oms_project_full_progress_ratio"] != before["oms_project_full_progress_ratio"]
    assert after["oms_project_step_status"] is before["oms_project_step_status"]
    assert after["oms_project_info"] is before["oms_project_info"]


def test_unchanged_blocks_keep_only_their_segments_whoever_scrapes(
    store: Store, collector: ProjectCollector, clock: Clock
):
    """Once deflated, a block that stays the same through a scrape holds its segment alone;
    a plain scrape inflates it to send and does not keep the text (that cost 40 MB of
    RSS at 10,000 projects whenever a plain reader came)."""
    store.record_success("oms-a:8089", "np_1", progress(steps=TEN_STEPS), now=NOW)

    def texts() -> list[bytes | None]:
        return [part.text for part in collector.render_parts() if isinstance(part, KeptText)]

    expected = gzipped(collector)  # every block deflated
    assert collector.take_settled_bytes() == 0
    plain = collector.render().decode()  # the blocks settle
    assert collector.take_settled_bytes() > 1000
    assert plain == gzipped(collector) == expected
    assert set(texts()) == {None}  # the plain scrape gave no text back
    clock.now += 30
    assert gzipped(collector) == expected.replace("} 42.000", "} 72.000")  # the lag only
    assert collector.render().decode() == gzipped(collector)


def polled_collector(clock: Clock, blocks: int) -> tuple[Store, list[str], ProjectCollector]:
    """A store with `blocks` full blocks of projects, each polled once, and its collector."""
    store = Store()
    ids = [f"np_{index:04d}" for index in range(blocks * BLOCK_PROJECTS)]
    store.set_projects("oms-a:8089", ids)
    collector = ProjectCollector(
        store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock
    )
    for project_id in ids:
        store.record_success("oms-a:8089", project_id, progress(project_id), now=NOW)
    return store, ids, collector


def test_a_round_is_rendered_and_deflated_before_the_scrape_comes(clock: Clock):
    """After prepare, a scrape finds every block rendered and deflated: it formats only
    the lag (at 10,000 projects the first scrape after a round took 375 ms, not 50)."""
    store, _ids, collector = polled_collector(clock, 3)
    asyncio.run(collector.prepare())
    parts = collector.render_parts()
    kept = [part for part in parts if isinstance(part, KeptText)]
    assert len(kept) >= 3 * 10  # three blocks of each family with lines here
    assert all(part.deflated is not None for part in kept)
    fresh = ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock)
    assert gzipped(collector) == fresh.render().decode()


@pytest.mark.parametrize("batch_bytes", [collector_module.PREPARE_BATCH_BYTES, 1])
async def test_changes_while_a_round_is_prepared_are_all_in_the_next_scrape(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, batch_bytes: int
):
    """prepare gives the loop back after each block: projects that change, fail, go or
    come meanwhile (removals close the blocks up) are in the scrape as they are then.
    With a batch per block, each batch deflates while the next is rendered."""
    monkeypatch.setattr(collector_module, "PREPARE_BATCH_BYTES", batch_bytes)
    rng = random.Random(7)
    store, ids, collector = polled_collector(clock, 6)
    for attempt in range(5):
        for project_id in ids:  # a round: every project changed
            point = Checkpoint("forward", NOW - rng.randrange(100), "")
            answer = progress(project_id, checkpoints=(point,))
            store.record_success("oms-a:8089", project_id, answer, now=NOW + attempt)
        preparing = asyncio.create_task(collector.prepare())
        while not preparing.done():
            await asyncio.sleep(0)
            roll = rng.random()
            project_id = rng.choice(ids)
            if roll < 0.5:
                answer = progress(project_id, full_progress_ratio=rng.random())
                store.record_success("oms-a:8089", project_id, answer, now=NOW + attempt)
            elif roll < 0.7:
                store.record_failure("oms-a:8089", project_id, Reason.TIMEOUT, "no answer")
            elif roll < 0.75:
                ids = ids[::2] if len(ids) > BLOCK_PROJECTS else ids
                store.set_projects("oms-a:8089", ids)
        await preparing
        fresh = ProjectCollector(
            store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock
        )
        expected = family_samples(fresh.render().decode())
        assert family_samples(collector.render().decode()) == expected
        body = b"".join((await gzip_pieces(units_of(collector.render_parts()))).pieces)
        assert family_samples(zlib.decompress(body, 31).decode()) == expected


async def test_a_gzip_scrape_can_wait_for_the_round_being_prepared(clock: Clock):
    """prepared() returns once prepare has rendered and deflated everything, at once
    between rounds: the gzip scrape that waits finds nothing left to render or deflate."""
    _store, _ids, collector = polled_collector(clock, 3)
    await asyncio.wait_for(collector.prepared(), 1)  # nothing under way
    preparing = asyncio.create_task(collector.prepare())
    await asyncio.sleep(0)  # prepare has begun: the first block is rendered
    waiting = asyncio.create_task(collector.prepared())
    while not preparing.done():
        assert not waiting.done()
        await asyncio.sleep(0)
    await asyncio.wait_for(waiting, 1)
    kept = [part for part in collector.render_parts() if isinstance(part, KeptText)]
    assert kept
    assert all(part.deflated is not None for part in kept)


async def test_a_cancelled_prepare_releases_its_waiters(clock: Clock):
    """Stopping the exporter cancels prepare: a scrape waiting on it goes on, it does not
    hang, and the collector still renders everything."""
    store, _ids, collector = polled_collector(clock, 3)
    preparing = asyncio.create_task(collector.prepare())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(collector.prepared())
    await asyncio.sleep(0)
    preparing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await preparing
    await asyncio.wait_for(waiting, 1)
    fresh = ProjectCollector(store, stale_after_seconds=90, poll_interval_seconds=30, clock=clock)
    assert collector.render() == fresh.render()


@pytest.mark.parametrize("status", ["FINISHED", "RELEASED", "DELETED"])
def test_a_settled_project_keeps_its_checkpoint_but_publishes_no_lag(
    store: Store, collector: ProjectCollector, status: str
):
    """Incremental sync has stopped: a lag counted from its last checkpoint would grow for
    good, and every lag alert would fire for every migration that cut over."""
    store.record_success("oms-a:8089", "np_1", progress(status=status), now=NOW)
    lines = samples(collector.render().decode())
    assert any(
        line.startswith("oms_project_incr_sync_checkpoint_timestamp_seconds{") for line in lines
    )
    assert not any(line.startswith(LAG_FAMILY_NAME + "{") for line in lines)
