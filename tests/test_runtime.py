"""The running exporter in-process: reloads during rounds, failing reloads, supervision.

A real replaying OMS on 127.0.0.1 and the real Exporter and web app; nothing of ours is
patched but the one poll round a supervision test makes fail.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from oms_exporter.config import ExporterConfig, load_config
from oms_exporter.gzipbody import KeptText
from oms_exporter.runtime import Exporter
from oms_exporter.settings import ConfigError
from oms_exporter.web import create_app
from tests.oms_replay import ReplayOms, Reply

GOOD = Reply.fixture("v4_progress.json")
STEPS = Reply.fixture("v4_steps.json")


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OMS_EXPORTER_"):
            monkeypatch.delenv(name)


async def oms_url(replay: ReplayOms, aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(replay.app(), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Exporter], Exporter]]:
    """Start exporters for a test; every one is stopped at its end, whatever happened."""
    started: list[Exporter] = []

    def start(exporter: Exporter) -> Exporter:
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        await exporter.stop()


async def wait_until(predicate: Callable[[], bool], *, limit_seconds: float = 20.0) -> None:
    """Wait for a state the exporter reaches; passing the limit fails the test."""
    async with asyncio.timeout(limit_seconds):
        while not predicate():  # noqa: ASYNC110 - the states waited for have no event
            await asyncio.sleep(0.01)


def config(url: str, ids: list[str], tmp_path: Path, **values: object) -> ExporterConfig:
    password = tmp_path / "password"
    if not password.exists():
        password.write_text("first-password\n")
    base: dict[str, object] = {
        "oms_url": url,
        "oms_name": "oms",
        "oms_username": "monitor",
        "oms_password_file": str(password),
        "project_ids": ",".join(ids),
        "poll_interval": "1",
        "request_timeout": "5",
    }
    return load_config({**base, **values})


def last_success(exporter: Exporter, oms: str, project_id: str) -> float | None:
    state = exporter.store.get(oms, project_id)
    return None if state is None else state.last_success_seconds


async def test_reload_with_a_rotated_password_mid_round_never_stops_polling(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    """A new password means a new session; the old one closes only after its round."""
    ids = [f"p{i:02d}" for i in range(30)]
    for project_id in ids:
        replay.v4[project_id] = Reply(GOOD.body, delay_seconds=0.05)
        replay.steps[project_id] = Reply(STEPS.body, delay_seconds=0.05)
    url = await oms_url(replay, aiohttp_server)
    values = {"max_concurrency": "2"}
    exporter = running(Exporter(config(url, ids, tmp_path, **values),
                                loader=lambda: config(url, ids, tmp_path, **values)))  # fmt: skip
    await exporter.start()
    for rotation in range(5):
        seen = 10 * (rotation + 1)
        await wait_until(lambda seen=seen: len(replay.seen) > seen)  # mid-round
        (tmp_path / "password").write_text(f"rotated-{rotation}\n")
        assert await exporter.reload() is None
    rounds = exporter.poller.rounds
    marks = {pid: last_success(exporter, "oms", pid) or 0.0 for pid in ids}
    await wait_until(lambda: exporter.poller.rounds >= rounds + 2)
    assert all((last_success(exporter, "oms", pid) or 0.0) > marks[pid] for pid in ids)
    assert exporter.metrics.task_restarts.labels("poller")._value.get() == 0
    assert exporter.health() is None
    authorizations = {seen.authorization for seen in replay.seen[-len(ids) :]}
    assert len(authorizations) == 1  # the last round used the newest credentials only


async def test_a_failing_reload_changes_nothing_and_a_good_one_then_applies(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    replay.v4["a"] = GOOD
    replay.v4["b"] = GOOD
    url = await oms_url(replay, aiohttp_server)
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("this is not a certificate\n")
    https = url.replace("http://", "https://")
    loads = iter(
        [
            lambda: config(https, ["a", "b"], tmp_path, tls_ca_file=str(bad_ca)),
            lambda: config(url, ["a", "b"], tmp_path, poll_interval="2"),
        ]
    )
    exporter = running(Exporter(config(url, ["a"], tmp_path), loader=lambda: next(loads)()))
    await exporter.start()
    await wait_until(lambda: exporter.poller.rounds >= 1)

    error = await exporter.reload()
    assert error is not None
    assert "tls_ca_file" in error
    assert "PEM" in error
    assert exporter.metrics.reload_ok._value.get() == 0
    assert exporter.config.poll_interval_seconds == 1 == exporter.poller.interval_seconds
    assert exporter.store.get("oms", "b") is None
    rounds = exporter.poller.rounds
    await wait_until(lambda: exporter.poller.rounds > rounds)  # polling went on

    assert await exporter.reload() is None
    assert exporter.metrics.reload_ok._value.get() == 1
    assert exporter.poller.interval_seconds == 2
    await wait_until(lambda: last_success(exporter, "oms", "b") is not None)


def test_a_non_pem_ca_file_is_refused_at_start_as_on_reload(tmp_path: Path):
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"^tls_ca_file .*holds no PEM certificate"):
        config("https://oms.example:8089", ["a"], tmp_path, tls_ca_file=str(bad_ca))


async def test_removing_an_oms_mid_round_leaves_none_of_its_series(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    slow = ReplayOms()
    for project_id in ("s1", "s2", "s3"):
        slow.v4[project_id] = Reply(GOOD.body, delay_seconds=0.3, status=503)
    replay.v4["f1"] = GOOD
    fast_url = await oms_url(replay, aiohttp_server)
    slow_url = await oms_url(slow, aiohttp_server)
    both = tmp_path / "both.yml"
    both.write_text(
        f"poll_interval: 1\nstep_details: false\ntargets:\n"
        f"  - {{name: slow, url: '{slow_url}', project_ids: [s1, s2, s3]}}\n"
        f"  - {{name: fast, url: '{fast_url}', project_ids: [f1]}}\n"
    )
    one = tmp_path / "one.yml"
    one.write_text(
        f"poll_interval: 1\ntargets:\n  - {{name: fast, url: '{fast_url}', project_ids: [f1]}}\n"
    )
    exporter = running(Exporter(load_config({}, both), loader=lambda: load_config({}, one)))
    await exporter.start()
    await wait_until(lambda: len(slow.seen) >= 1)  # the slow OMS's round is in flight
    assert await exporter.reload() is None
    rounds = exporter.poller.rounds
    await wait_until(lambda: exporter.poller.rounds >= rounds + 2)
    exposition = generate_latest(exporter.metrics.registry).decode()
    exposition += exporter.collector.render().decode()
    assert 'oms="slow"' not in exposition
    assert 'oms_up{oms="fast"} 1.0' in exposition
    assert [state.oms for state in exporter.store] == ["fast"]


async def test_a_dying_poller_is_logged_counted_restarted_and_health_tells(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    replay.v4["a"] = GOOD
    url = await oms_url(replay, aiohttp_server)
    clock = Clock()
    restarted = asyncio.Event()
    backoffs: list[float] = []

    async def no_wait(seconds: float) -> None:
        backoffs.append(seconds)
        restarted.set()
        await asyncio.sleep(0)

    exporter = running(Exporter(config(url, ["a"], tmp_path), monotonic=clock, sleep=no_wait))
    client: TestClient = await aiohttp_client(create_app(exporter))
    original = exporter.poller.poll_round
    failures = iter([True, False])

    async def failing_once() -> None:
        if next(failures, False):
            raise RuntimeError("a bug in a round")
        await original()

    monkeypatch.setattr(exporter.poller, "poll_round", failing_once)
    await exporter.start()
    await restarted.wait()
    await wait_until(lambda: exporter.poller.rounds >= 1)
    assert exporter.metrics.task_restarts.labels("poller")._value.get() == 1
    assert backoffs == [1.0]
    tracebacks = [r for r in caplog.records if r.exc_info and "task poller" in r.getMessage()]
    assert len(tracebacks) == 1
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200

    clock.now += 3 * 1 + 5 + 1  # no round ends for 3 intervals + the request timeout
    response = await client.get("/healthz")
    assert response.status == 503
    assert "no poll round completed and no project polled" in await response.text()
    assert (await client.get("/readyz")).status == 503
    exporter.poller.last_progress = clock.now  # a long round that still polls projects
    assert (await client.get("/healthz")).status == 200


async def test_concurrent_reloads_share_one_load(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    replay.v4["a"] = GOOD
    url = await oms_url(replay, aiohttp_server)
    release = threading.Event()
    loads: list[int] = []

    def slow_loader() -> ExporterConfig:
        loads.append(1)
        release.wait(timeout=10)
        return config(url, ["a"], tmp_path)

    exporter = running(Exporter(config(url, ["a"], tmp_path), loader=slow_loader))
    client: TestClient = await aiohttp_client(create_app(exporter))
    await exporter.start()
    posts = [asyncio.create_task(client.post("/-/reload")) for _ in range(20)]
    await wait_until(lambda: bool(loads))
    scrape = await client.get("/metrics")  # the loop is free while the file is read
    assert scrape.status == 200
    release.set()
    statuses = [(await post).status for post in posts]
    assert statuses == [200] * 20
    assert len(loads) == 1


async def test_a_reload_that_raises_anything_is_refused_with_one_line(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    replay.v4["a"] = GOOD
    url = await oms_url(replay, aiohttp_server)

    def broken() -> ExporterConfig:
        raise RecursionError("maximum recursion depth exceeded")

    exporter = running(Exporter(config(url, ["a"], tmp_path), loader=broken))
    await exporter.start()
    exporter.request_reload()  # what SIGHUP does
    exporter.request_reload()
    await wait_until(lambda: exporter.metrics.reload_ok._value.get() == 0)
    assert await exporter.reload() == "internal error while loading: RecursionError"
    await wait_until(lambda: exporter.poller.rounds >= 1)


async def test_each_round_is_rendered_and_deflated_before_a_scrape_asks(
    replay: ReplayOms,
    aiohttp_server: AiohttpServer,
    running: Callable[[Exporter], Exporter],
    tmp_path: Path,
):
    """Nothing but the exporter's own prepare task deflates a block without a gzip scrape:
    that every block has its segment shows the round was made ready behind the poller."""
    ids = [f"p{i:02d}" for i in range(20)]
    for project_id in ids:
        replay.v4[project_id] = GOOD
        replay.steps[project_id] = STEPS
    url = await oms_url(replay, aiohttp_server)
    exporter = running(Exporter(config(url, ids, tmp_path)))
    await exporter.start()
    await wait_until(lambda: exporter.poller.rounds >= 1)

    def ready() -> bool:
        kept = [p for p in exporter.collector.render_parts() if isinstance(p, KeptText)]
        return bool(kept) and all(part.deflated is not None for part in kept)

    await wait_until(ready)
    assert exporter.metrics.task_restarts.labels("prepare")._value.get() == 0
