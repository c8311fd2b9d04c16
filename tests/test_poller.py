"""The poller against a replaying OMS: isolation, backoff, outages, retries, no overlap."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from oms_exporter.config import TargetConfig
from oms_exporter.model import FullVerification, Reason
from oms_exporter.poller import MAX_NOT_FOUND_BACKOFF_SECONDS, Poller, not_found_backoff_rounds
from oms_exporter.selfmetrics import SelfMetrics
from oms_exporter.sharding import Shard
from oms_exporter.store import Store
from tests.conftest import ClientUnderTest, target_config
from tests.oms_replay import (
    ReplayOms,
    Reply,
    describe_project,
    fixture_json,
    progress_with,
    verify_entry,
)

MakeClient = Callable[..., ClientUnderTest]
GOOD = Reply.fixture("v4_progress.json")
OUTAGE = Reply.fixture("proxy_502.html", status=503)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def build(
    make_client: MakeClient,
    project_ids: list[str],
    *,
    interval: float = 10.0,
    concurrency: int = 4,
    timeout_seconds: float = 2.0,
) -> tuple[Poller, Clock]:
    clock = Clock()
    cut = make_client("v4", max_concurrency=concurrency, timeout_seconds=timeout_seconds)
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=interval, clock=clock)
    configure(poller, [(target_config("oms", project_ids), cut)], concurrency=concurrency)
    poller.request_timeout_seconds = timeout_seconds
    return poller, clock


def configure(
    poller: Poller, targets: list[tuple[TargetConfig, ClientUnderTest]], *, concurrency: int = 4
) -> None:
    poller.configure(
        [(config, cut.client) for config, cut in targets],
        interval_seconds=poller.interval_seconds,
        request_timeout_seconds=poller.request_timeout_seconds,
        max_concurrency=concurrency,
        shard=Shard(),
    )


def up(poller: Poller, project_id: str) -> bool:
    state = poller.store.get("oms", project_id)
    assert state is not None
    return state.up


def oms_up(poller: Poller) -> float:
    return poller.metrics.oms_up.labels("oms")._value.get()


async def test_hanging_project_does_not_delay_others(replay: ReplayOms, make_client: MakeClient):
    ids = [f"p{i}" for i in range(6)]
    for project_id in ids:
        replay.v4[project_id] = GOOD
    replay.v4["p0"] = Reply(b"", hang=True)
    poller, _ = build(make_client, ids, timeout_seconds=0.5)
    round_task = asyncio.create_task(poller.poll_round())
    for _ in range(50):
        if all(up(poller, pid) for pid in ids[1:]):
            break
        await asyncio.sleep(0.02)
    assert all(up(poller, pid) for pid in ids[1:])
    assert not round_task.done()  # the others' values were in before the hang ended
    await round_task
    state = poller.store.get("oms", "p0")
    assert state is not None
    assert state.last_error_reason is Reason.TIMEOUT


async def test_not_found_project_is_polled_with_backoff(replay: ReplayOms, make_client: MakeClient):
    replay.v4["ok"] = GOOD
    poller, clock = build(make_client, ["ok", "gone"])
    for _ in range(8):
        await poller.poll_round()
        clock.now += 10
    polled = replay.count(action="DescribeProjectProgress")
    # "ok" every round (8); "gone" in rounds 1, 2, 4 and 8 only.
    assert polled == 8 + 4
    state = poller.store.get("oms", "gone")
    assert state is not None
    assert state.last_error_reason is Reason.NOT_FOUND
    assert oms_up(poller) == 1.0  # a not-found answer is still a working OMS


async def test_whole_oms_down_is_probed_once_per_round_and_recovers(
    replay: ReplayOms, make_client: MakeClient
):
    ids = [f"p{i}" for i in range(20)]
    for project_id in ids:
        replay.v4[project_id] = GOOD
    poller, _ = build(make_client, ids)
    await poller.poll_round()
    assert oms_up(poller) == 1.0

    replay.everything = OUTAGE
    before = len(replay.seen)
    await poller.poll_round()
    first_down_round = len(replay.seen) - before
    assert first_down_round <= 10, "an outage must not cost a request (and retries) per project"
    assert not any(up(poller, pid) for pid in ids)
    assert oms_up(poller) == 0.0

    before = len(replay.seen)
    await poller.poll_round()
    assert len(replay.seen) - before == 1  # one probe

    replay.everything = None
    await poller.poll_round()  # recovery within one round of OMS coming back
    assert all(up(poller, pid) for pid in ids)
    assert oms_up(poller) == 1.0


async def test_transient_error_is_retried_within_the_round(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["ok"] = GOOD
    replay.v4["flaky"] = [Reply.fixture("proxy_502.html", status=502), GOOD]
    poller, _ = build(make_client, ["ok", "flaky"], concurrency=1)
    await poller.poll_round()
    assert up(poller, "flaky")
    assert replay.count(action="DescribeProjectProgress") == 3


async def test_unexpected_exception_marks_only_that_project_down(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    replay.v4["ok"] = GOOD
    replay.v4["bug"] = GOOD
    poller, _ = build(make_client, ["ok", "bug"])
    client = poller.targets["oms"].client
    original = client.fetch_progress

    async def buggy(project_id: str):  # type: ignore[no-untyped-def]
        if project_id == "bug":
            raise RuntimeError("boom")
        return await original(project_id)

    monkeypatch.setattr(client, "fetch_progress", buggy)
    await poller.poll_round()
    assert up(poller, "ok")
    assert not up(poller, "bug")
    state = poller.store.get("oms", "bug")
    assert state is not None
    assert state.last_error_reason is Reason.INVALID


async def test_reconfigured_projects_appear_and_disappear(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["a"] = GOOD
    replay.v4["b"] = GOOD
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ["a"]), cut)])
    await poller.poll_round()
    configure(poller, [(target_config("oms", ["b"]), cut)])
    assert poller.store.get("oms", "a") is None
    await poller.poll_round()
    assert up(poller, "b")


def test_not_found_backoff_never_exceeds_five_minutes():
    """OMSProjectNotFound looks at 15 minutes: the backoff must leave no gap that long."""
    assert [not_found_backoff_rounds(count, 30.0) for count in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    for interval in (1.0, 5.0, 30.0, 60.0, 300.0, 600.0):
        rounds = [not_found_backoff_rounds(count, interval) for count in range(1, 40)]
        assert max(rounds) * interval <= max(MAX_NOT_FOUND_BACKOFF_SECONDS, interval)
        assert min(rounds) >= 1


async def test_decode_failures_of_some_projects_leave_the_others_and_the_oms_up(
    replay: ReplayOms, make_client: MakeClient
):
    """The breaker counts transport failures only: a bad answer is still an answer."""
    ids = [f"p{i}" for i in range(13)]
    for project_id in ids:
        replay.v4[project_id] = GOOD
    for project_id in ids[:3]:
        replay.v4[project_id] = Reply(b"<html>not json</html>")
    poller, _ = build(make_client, ids, concurrency=1)
    await poller.poll_round()
    assert all(up(poller, pid) for pid in ids[3:])
    for project_id in ids[:3]:
        state = poller.store.get("oms", project_id)
        assert state is not None
        assert state.last_error_reason is Reason.DECODE
    assert oms_up(poller) == 1.0


async def test_an_exception_while_fetching_steps_marks_only_that_project_down(
    replay: ReplayOms, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
):
    replay.v4["ok"] = GOOD
    replay.v4["bug"] = GOOD
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ["ok", "bug"], step_details=True), cut)])
    original = cut.client.fetch_steps

    async def buggy(project_id: str):  # type: ignore[no-untyped-def]
        if project_id == "bug":
            raise OverflowError("int too large to convert to float")
        return await original(project_id)

    monkeypatch.setattr(cut.client, "fetch_steps", buggy)
    await poller.poll_round()
    await poller.poll_round()  # the poller goes on: a second round completes
    assert poller.rounds == 2
    assert up(poller, "ok")
    state = poller.store.get("oms", "bug")
    assert state is not None
    assert (state.up, state.last_error_reason) == (False, Reason.INVALID)
    assert state.last_error_message == "internal error: OverflowError"


async def test_oms_is_asked_only_what_can_have_changed(replay: ReplayOms, make_client: MakeClient):
    """Steps while they move, every 10th round in steady sync; settled progress every 10th."""
    replay.v4["full"] = GOOD  # FULL_TRANSFER running: steps every round
    replay.steps["full"] = Reply.fixture("v4_steps.json")
    replay.v4["steady"] = GOOD
    replay.steps["steady"] = Reply.fixture("v4_steps_incr_steady.json")
    replay.v4["done"] = progress_with("v4_progress.json", status="FINISHED")
    replay.steps["done"] = Reply.fixture("v4_steps_incr_steady.json")
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    ids = ["full", "steady", "done"]
    configure(poller, [(target_config("oms", ids, step_details=True), cut)])
    for _ in range(20):
        await poller.poll_round()

    def asked(action: str, project_id: str) -> int:
        return sum(1 for s in replay.seen if s.action == action and s.project_id == project_id)

    assert asked("DescribeProjectSteps", "full") == 20
    assert asked("DescribeProjectSteps", "steady") == 2  # rounds 0 and 10
    assert asked("DescribeProjectProgress", "steady") == 20
    steady_per_poll = (asked("DescribeProjectSteps", "steady") + 20) / 20
    assert steady_per_poll <= 1.2
    assert asked("DescribeProjectProgress", "done") == 2  # rounds 0 and 10
    assert asked("DescribeProjectSteps", "done") == 1  # settled: once
    assert all(up(poller, pid) for pid in ids)


async def test_a_verifier_left_running_at_100_is_settled_not_moving(
    replay: ReplayOms, make_client: MakeClient
):
    """ODC: OMS may leave FULL_VERIFIER RUNNING at 100 for good. Cut-over readiness counts
    it as done; asking its steps every round for it cost 2 requests per poll, not 1.1."""
    steps = fixture_json("v4_steps_incr_steady.json")
    for step in steps["data"]:
        if step["name"] == "FULL_VERIFIER":
            step["status"] = "RUNNING"
    replay.v4["verified"] = GOOD
    replay.steps["verified"] = Reply.json(steps)
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ["verified"], step_details=True), cut)])
    for _ in range(20):
        await poller.poll_round()
    assert replay.count(action="DescribeProjectSteps") == 2  # rounds 0 and 10
    assert up(poller, "verified")


async def test_an_oms_refusing_the_steps_action_is_not_asked_every_round(
    replay: ReplayOms, make_client: MakeClient
):
    """PARAM_ERROR to DescribeProjectSteps: marked unavailable, probed every 10 rounds."""
    ids = [f"p{i}" for i in range(10)]
    refused = Reply.json({"success": False, "code": "PARAM_ERROR", "message": "no such Action"})
    for project_id in ids:
        replay.v4[project_id] = GOOD
        replay.steps[project_id] = refused
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ids, step_details=True), cut)], concurrency=2)
    available = poller.metrics.action_available.labels("oms", "DescribeProjectSteps")
    for _ in range(10):
        await poller.poll_round()
    assert available._value.get() == 0
    assert len(replay.seen) / (10 * len(ids)) <= 1.2  # progress, DescribeProject once, steps
    steps_asked = replay.count(action="DescribeProjectSteps")
    assert steps_asked <= 2  # the two workers in flight when the first refusal came
    assert all(up(poller, pid) for pid in ids)

    replay.steps["p0"] = Reply.fixture("v4_steps.json")  # OMS upgraded
    for project_id in ids[1:]:
        replay.steps[project_id] = Reply.fixture("v4_steps.json")
    await poller.poll_round()  # round 10: probed again
    assert replay.count(action="DescribeProjectSteps") > steps_asked
    assert available._value.get() == 1


# --- full verification (ListProjectFullVerifyResult) -------------------------------------
VERIFY = "ListProjectFullVerifyResult"
VERIFIER_RUNNING = Reply.fixture("v4_steps_verifier.json")  # FULL_VERIFIER RUNNING at 42 %
VERIFIER_DONE = Reply.fixture("v4_steps_incr_steady.json")  # FULL_VERIFIER FINISHED at 100 %
VERIFIER_NOT_STARTED = Reply.fixture("v4_steps.json")  # FULL_VERIFIER INIT


def verification_poller(make_client: MakeClient, ids: list[str]) -> Poller:
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ids, step_details=True), cut)], concurrency=2)
    return poller


def verification_of(poller: Poller, project_id: str) -> FullVerification | None:
    state = poller.store.get("oms", project_id)
    assert state is not None
    assert state.progress is not None
    return state.progress.verification


async def test_verification_is_asked_while_it_runs_once_when_it_settles_and_then_kept(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["np_v"] = GOOD
    replay.steps["np_v"] = VERIFIER_RUNNING
    running = [verify_entry("a"), verify_entry("b", "RUNNING", status="RUNNING", progress="40")]
    replay.verified["np_v"] = (0, running)
    poller = verification_poller(make_client, ["np_v"])
    for _ in range(3):
        await poller.poll_round()
    assert replay.count(action=VERIFY) == 3  # every round while it runs
    result = verification_of(poller, "np_v")
    assert result is not None
    assert result.tables_by_result["RUNNING"] == 1

    replay.steps["np_v"] = VERIFIER_DONE
    final = [verify_entry("a"), verify_entry("b", "INCONSISTENT", mismatched=17)]
    replay.verified["np_v"] = (17, final)
    for _ in range(12):
        await poller.poll_round()
    assert replay.count(action=VERIFY) == 4  # once more when it settled, then never
    result = verification_of(poller, "np_v")
    assert result is not None
    assert (result.different_rows, result.tables_by_result["INCONSISTENT"]) == (17, 1)
    assert [t.source_table for t in result.worst_tables] == ["b"]
    assert up(poller, "np_v")
    assert poller.metrics.action_available.labels("oms", VERIFY)._value.get() == 1


async def test_verification_is_not_asked_before_it_starts_or_without_a_verifier(
    replay: ReplayOms, make_client: MakeClient
):
    replay.v4["np_init"] = GOOD
    replay.steps["np_init"] = VERIFIER_NOT_STARTED
    replay.v4["np_none"] = GOOD
    steps = fixture_json("v4_steps_incr_steady.json")
    steps["data"] = [s for s in steps["data"] if s["name"] != "FULL_VERIFIER"]
    replay.steps["np_none"] = Reply.json(steps)
    replay.v4["np_off"] = GOOD  # step details off: no steps, no verification
    cut = make_client("v4")
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(
        poller,
        [
            (target_config("oms", ["np_init", "np_none"], step_details=True), cut),
            (target_config("off", ["np_off"], step_details=False), make_client("v4")),
        ],
    )
    for _ in range(3):
        await poller.poll_round()
    assert replay.count(action=VERIFY) == 0
    assert verification_of(poller, "np_init") is None
    assert all(up(poller, pid) for pid in ("np_init", "np_none"))


async def test_an_oms_refusing_the_verification_action_is_probed_every_10_rounds(
    replay: ReplayOms, make_client: MakeClient
):
    ids = [f"p{i}" for i in range(6)]
    for project_id in ids:
        replay.v4[project_id] = GOOD
        replay.steps[project_id] = VERIFIER_RUNNING
        replay.verified[project_id] = (0, [verify_entry("a")])
    replay.without_actions.add(VERIFY)
    poller = verification_poller(make_client, ids)
    available = poller.metrics.action_available.labels("oms", VERIFY)
    for _ in range(10):
        await poller.poll_round()
    assert available._value.get() == 0
    asked = replay.count(action=VERIFY)
    assert asked <= 2  # the two workers in flight when the first refusal came
    assert all(up(poller, pid) for pid in ids)
    assert all(verification_of(poller, pid) is None for pid in ids)

    replay.without_actions.discard(VERIFY)  # OMS upgraded
    await poller.poll_round()  # round 10: probed again
    assert replay.count(action=VERIFY) > asked
    assert available._value.get() == 1
    assert all(verification_of(poller, pid) is not None for pid in ids)


@pytest.mark.parametrize(
    "failure",
    [
        Reply.fixture("proxy_502.html", status=502),
        Reply(b'{"success":true,"data":{"differentNumber":'),
        Reply.fixture("v4_cm_unavailable.json"),
        Reply(b"", hang=True),
        "exception",
    ],
    ids=["http_502", "broken_json", "business_error", "timeout", "exception"],
)
async def test_a_failing_verification_keeps_the_project_up_with_the_last_result(
    replay: ReplayOms,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    failure: Reply | str,
):
    replay.v4["np_v"] = GOOD
    replay.steps["np_v"] = VERIFIER_RUNNING
    replay.verified["np_v"] = (3, [verify_entry("a", "INCONSISTENT", mismatched=3)])
    cut = make_client("v4", timeout_seconds=0.3)
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    poller.request_timeout_seconds = 0.3
    configure(poller, [(target_config("oms", ["np_v"], step_details=True), cut)])
    await poller.poll_round()
    first = verification_of(poller, "np_v")
    assert first is not None
    if isinstance(failure, Reply):
        replay.verify["np_v"] = failure
    else:

        async def broken(project_id: str) -> FullVerification | None:
            raise RuntimeError("boom")

        monkeypatch.setattr(cut.client, "fetch_verification", broken)
    for _ in range(2):
        await poller.poll_round()
    assert up(poller, "np_v")
    assert verification_of(poller, "np_v") == first
    state = poller.store.get("oms", "np_v")
    assert state is not None
    assert state.last_error_reason is None
    assert poller.metrics.action_available.labels("oms", VERIFY)._value.get() == 1


def steps_reply(*statuses: tuple[str, str, int]) -> Reply:
    steps = [
        {"order": i + 1, "name": name, "status": status, "progress": progress}
        for i, (name, status, progress) in enumerate(statuses)
    ]
    return Reply.json({"success": True, "errorDetail": None, "code": None, "data": steps})


async def test_steps_that_run_until_an_operator_acts_are_steady(
    replay: ReplayOms, make_client: MakeClient
):
    """A migration waiting for its switchover, a sync's endless incremental: every 10th.

    A migration's INCR_TRANSFER still RUNNING (catching up) is asked every round: cut-over
    readiness waits for its MONITORING.
    """
    waiting = steps_reply(
        ("FULL_TRANSFER", "FINISHED", 100),
        ("TRANSFER_INCR_LOG_PULL", "RUNNING", 100),
        ("INCR_TRANSFER", "MONITORING", 100),
        ("INCR_VERIFIER", "RUNNING", 100),
        ("TRANSFER_APP_SWITCH", "RUNNING", 0),
        ("REVERSE_INCR_TRANSFER", "RUNNING", 100),
    )
    endless = steps_reply(("FULL_TRANSFER", "FINISHED", 100), ("INCR_TRANSFER", "RUNNING", 100))
    for project_id, steps, kind in (
        ("waiting", waiting, "MIGRATION"),
        ("sync", endless, "SYNC"),
        ("catching_up", endless, "MIGRATION"),
    ):
        replay.v4[project_id] = GOOD
        replay.steps[project_id] = steps
        replay.describe[project_id] = describe_project(project_id, kind=kind)
    ids = ["waiting", "sync", "catching_up"]
    poller = Poller(store=Store(), metrics=SelfMetrics(), interval_seconds=10, clock=Clock())
    configure(poller, [(target_config("oms", ids, step_details=True), make_client("v4"))])
    for _ in range(20):
        await poller.poll_round()
    asked = Counter(s.project_id for s in replay.seen if s.action == "DescribeProjectSteps")
    assert asked == {"waiting": 2, "sync": 2, "catching_up": 20}
