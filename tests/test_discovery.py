"""Discovery, step details and sharding: client level against replayed answers."""

from __future__ import annotations

import copy
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms_exporter.config import TargetConfig
from oms_exporter.model import ProjectDetails
from oms_exporter.oms import discovery
from oms_exporter.oms.client import DiscoveryUnavailable
from oms_exporter.oms.discovery import DiscoveryFilter, matches
from oms_exporter.poller import Poller
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.sharding import Shard, ordinal_from_pod_name, resolve_shard, shard_of
from oms_exporter.store import Store
from tests.conftest import ClientUnderTest, target_config
from tests.oms_replay import ReplayOms, Reply, fixture_json

MakeClient = Callable[..., ClientUnderTest]


def listed(count: int, **changes: object) -> list[dict[str, object]]:
    item = fixture_json("v4_list_item.json")
    rows = []
    for index in range(count):
        row = copy.deepcopy(item)
        row.update({"id": f"np_{index:04d}", "name": f"project {index}", **changes})
        rows.append(row)
    return rows


async def test_discovery_pages_through_every_project(replay: ReplayOms, make_client: MakeClient):
    replay.listed = listed(340)
    projects = await make_client().client.list_projects(DiscoveryFilter())
    assert len(projects) == 340
    # 150 + 150 + 40, and perhaps pages asked ahead of the last
    assert 3 <= replay.count(action="ListProjects") <= 3 + discovery.PAGES_AHEAD
    first = projects[0].details
    assert first == ProjectDetails(
        project_id="np_0000",
        name="project 0",
        type="MIGRATION",
        source_type="MYSQL",
        sink_type="OB_MYSQL",
        labels="billing,prod",
        status="RUNNING",
        alarming=False,
        full_verify=True,
        incr_verify=False,
    )


async def test_discovered_details_spare_describe_project(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = listed(1)
    replay.v4["np_0000"] = Reply.fixture("v4_progress.json")
    cut = make_client()
    await cut.client.list_projects(DiscoveryFilter())
    progress = await cut.client.fetch_progress("np_0000")
    assert progress.name == "project 0"
    assert progress.kind.value == "migration"
    assert replay.count(action="DescribeProject") == 0


async def test_discovery_on_a_v3_oms_is_unavailable(replay: ReplayOms, make_client: MakeClient):
    replay.speaks_v4 = False
    cut = make_client()
    with pytest.raises(DiscoveryUnavailable, match=r"4\.x"):
        await cut.client.list_projects(DiscoveryFilter())
    assert cut.client.server_api == "v3"


def details(**values: str) -> ProjectDetails:
    base = {"project_id": "np_1", "name": "orders", "type": "MIGRATION", "labels": "prod"}
    return ProjectDetails(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "project", "kept"),
    [
        (DiscoveryFilter(), details(), True),
        (DiscoveryFilter(types=("SYNC",)), details(), False),
        (DiscoveryFilter(statuses=("RUNNING",)), details(status="RUNNING"), True),
        (DiscoveryFilter(statuses=("FAILED",)), details(status="RUNNING"), False),
        (DiscoveryFilter(labels=("prod",)), details(labels="billing,prod"), True),
        (DiscoveryFilter(labels=("test",)), details(labels="billing,prod"), False),
        (DiscoveryFilter(include="^ord"), details(), True),
        (DiscoveryFilter(include="^np_9"), details(), False),
        (DiscoveryFilter(exclude="orders"), details(), False),
        (DiscoveryFilter(include="np_", exclude="^tmp"), details(), True),
    ],
)
def test_discovery_filters(settings: DiscoveryFilter, project: ProjectDetails, kept: bool):
    assert matches(project, settings) is kept


async def test_step_details_are_parsed(replay: ReplayOms, make_client: MakeClient):
    replay.steps["p1"] = Reply.fixture("v4_steps.json")
    replay.v4["p1"] = Reply.fixture("v4_progress.json")
    cut = make_client("v4")
    await cut.client.fetch_progress("p1")
    steps = {step.name: step for step in await cut.client.fetch_steps("p1") or ()}
    assert list(steps) == [
        "TRANSFER_PRECHECK",
        "STRUCT_TRANSFER",
        "FULL_TRANSFER",
        "FULL_VERIFIER",
        "INCR_TRANSFER",
    ]
    full = steps["FULL_TRANSFER"]
    assert (full.status, full.progress_ratio) == ("RUNNING", 0.37)
    assert full.full_transfer is not None
    assert full.full_transfer.eta_seconds == pytest.approx((10_000_000 - 3_700_000) / 5000)
    assert steps["FULL_VERIFIER"].progress_ratio is None
    assert steps["INCR_TRANSFER"].status == "UNKNOWN"  # an unlisted status


async def test_poller_merges_discovered_and_static_ids_and_follows_removals(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = listed(3)
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
    replay.v4["static"] = Reply.fixture("v4_progress.json")
    cut = make_client("v4")
    now = [100.0]
    poller = Poller(
        store=Store(), metrics=SelfMetrics(), interval_seconds=10, monotonic=lambda: now[0]
    )
    config = target_config(
        "oms",
        ["static", "np_0000"],
        discovery=DiscoveryFilter(),
        discovery_interval_seconds=60,
    )
    poller.configure(
        [(config, cut.client)],
        interval_seconds=10,
        request_timeout_seconds=2,
        max_concurrency=2,
        shard=Shard(),
    )
    await poller.poll_round()
    assert sorted(state.project_id for state in poller.store) == [
        "np_0000",
        "np_0001",
        "np_0002",
        "static",
    ]
    replay.listed = replay.listed[:1]  # np_0001 and np_0002 deleted in OMS
    await poller.poll_round()  # within the discovery interval: the same list
    assert len(list(poller.store)) == 4
    now[0] += 61  # past the discovery interval
    await poller.poll_round()
    assert sorted(state.project_id for state in poller.store) == ["np_0000", "static"]


@given(
    st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1), max_size=60
    ),
    st.integers(min_value=1, max_value=7),
)
def test_shards_are_disjoint_and_complete(project_ids: list[str], count: int):
    owners = {
        pid: [i for i in range(count) if Shard(i, count).owns("oms-a:8089", pid)]
        for pid in project_ids
    }
    assert all(len(shards) == 1 for shards in owners.values())


def test_adding_a_shard_moves_about_one_in_n_plus_one_projects():
    """4 -> 5 shards moves about 20 % of the projects (crc32 % N moved 80 %)."""
    ids = [f"np_{index:05d}" for index in range(10_000)]
    moved = sum(shard_of("oms-a:8089", pid, 4) != shard_of("oms-a:8089", pid, 5) for pid in ids)
    assert 0.15 < moved / len(ids) <= 0.25
    sizes = [sum(shard_of("oms-a:8089", pid, 5) == shard for pid in ids) for shard in range(5)]
    assert min(sizes) > 1800  # and the shares stay even
    # Every project that moved went to the new shard: nothing shuffles among the old ones.
    assert all(shard_of("oms-a:8089", pid, 5) in (shard_of("oms-a:8089", pid, 4), 4) for pid in ids)


def test_shard_ordinal_comes_from_the_statefulset_pod_name(monkeypatch: pytest.MonkeyPatch):
    assert ordinal_from_pod_name("oms-exporter-2") == 2
    assert ordinal_from_pod_name("oms-exporter") is None
    monkeypatch.setenv("POD_NAME", "oms-exporter-1")
    assert resolve_shard(index=None, count=3) == Shard(1, 3)
    monkeypatch.setenv("POD_NAME", "oms-exporter-5")
    with pytest.raises(ValueError, match="not below"):
        resolve_shard(index=None, count=3)
    assert resolve_shard(index=None, count=1) == Shard(0, 1)


def poller_for(cut: ClientUnderTest, config: TargetConfig) -> Poller:
    """A poller of one OMS, 10 s rounds, at most 4 requests in flight."""
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10)
    poller.configure(
        [(config, cut.client)],
        interval_seconds=10,
        request_timeout_seconds=2,
        max_concurrency=4,
        shard=Shard(),
    )
    return poller


async def test_steps_listed_by_discovery_replace_the_step_calls_of_that_round(
    replay: ReplayOms, make_client: MakeClient
):
    """ListProjects items carry steps: no DescribeProjectSteps in the round of a listing."""
    running = [
        {"order": 1, "name": "TRANSFER_PRECHECK", "status": "FINISHED", "progress": 100},
        {"order": 2, "name": "FULL_TRANSFER", "status": "RUNNING", "progress": 40},
    ]
    replay.listed = listed(3, steps=running)
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
        replay.steps[str(row["id"])] = Reply.fixture("v4_steps.json")
    config = target_config("oms", [], discovery=DiscoveryFilter(), step_details=True)
    poller = poller_for(make_client("v4"), config)
    await poller.poll_round()
    assert replay.count(action="DescribeProjectSteps") == 0
    state = poller.store.get("oms", "np_0001")
    assert state is not None
    assert state.progress is not None
    assert state.progress.steps
    assert [(s.name, s.status) for s in state.progress.steps] == [
        ("TRANSFER_PRECHECK", "FINISHED"),
        ("FULL_TRANSFER", "RUNNING"),
    ]
    await poller.poll_round()  # no listing this round, and a step runs: asked
    assert replay.count(action="DescribeProjectSteps") == 3


def configured_poller(cut: ClientUnderTest, project_ids: list[str]) -> Poller:
    return poller_for(cut, target_config("oms", project_ids, step_details=True))


@pytest.mark.parametrize(("configured", "pages"), [(200, 2), (150, 1)])
async def test_many_configured_projects_are_described_by_listing_them(
    replay: ReplayOms, make_client: MakeClient, configured: int, pages: int
):
    """150 a ListProjects page instead of a DescribeProject and a step call for each."""
    replay.listed = listed(400)  # the OMS has more projects than are configured
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
    ids = [f"np_{index:04d}" for index in range(configured)]
    poller = configured_poller(make_client(), ids)
    await poller.poll_round()
    # Stops once every ID is found; past the first full page, pages may be asked ahead.
    asked = replay.count(action="ListProjects")
    assert pages <= asked <= (pages + discovery.PAGES_AHEAD if pages > 1 else pages)
    assert replay.count(action="DescribeProject") == 0
    assert replay.count(action="DescribeProjectSteps") == 0
    assert replay.count(action="DescribeProjectProgress") == configured
    state = poller.store.get("oms", "np_0001")
    assert state is not None
    assert state.up
    assert state.progress is not None
    assert state.progress.name == "project 1"  # the listing's details
    assert state.progress.details is not None
    assert state.progress.details.alarming is None  # not listed again: it would go stale
    assert [step.name for step in state.progress.steps or ()] == [
        "TRANSFER_PRECHECK",
        "INCR_TRANSFER",
    ]
    await poller.poll_round()
    assert replay.count(action="ListProjects") == asked  # once, not every round


async def test_projects_listed_are_polled_while_the_next_page_is_listed(
    replay: ReplayOms, make_client: MakeClient
):
    """The first page's projects are asked for before the second page is answered."""
    replay.listed = listed(300)
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
    replay.pages_wait_for_progress = 150
    poller = configured_poller(make_client(), [f"np_{index:04d}" for index in range(300)])
    await poller.poll_round()
    assert not replay.pages_held_too_long
    assert 2 <= replay.count(action="ListProjects") <= 2 + discovery.PAGES_AHEAD  # ahead
    assert replay.count(action="DescribeProject") == 0
    assert replay.count(action="DescribeProjectSteps") == 0
    assert all(state.up for state in poller.store)
    assert len(list(poller.store)) == 300


async def test_few_configured_projects_are_described_one_by_one(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = listed(400)
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
    await configured_poller(make_client(), [f"np_{i:04d}" for i in range(149)]).poll_round()
    assert replay.count(action="ListProjects") == 0
    assert replay.count(action="DescribeProject") == 149


async def test_a_refused_listing_falls_back_to_describing_each_project(
    replay: ReplayOms, make_client: MakeClient
):
    replay.listed = listed(200)
    for row in replay.listed:
        replay.v4[str(row["id"])] = Reply.fixture("v4_progress.json")
    replay.without_actions.add("ListProjects")
    poller = configured_poller(make_client(), [f"np_{i:04d}" for i in range(200)])
    await poller.poll_round()
    assert replay.count(action="ListProjects") == 2  # with the sort fields, then without
    assert replay.count(action="DescribeProject") == 200
    assert all(state.up for state in poller.store)
