"""Shared fixtures: a replaying OMS on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from oms_exporter.config import TargetConfig
from oms_exporter.model import Reason
from oms_exporter.oms.client import ApiChoice, OmsClient
from oms_exporter.oms.discovery import DiscoveryFilter
from oms_exporter.oms.httpclient import HttpClient
from oms_exporter.oms.transport import Transport, make_session
from tests.oms_replay import ReplayOms

USERNAME = "oms-user"
PASSWORD = "s3cret-pa55word"


def target_config(
    name: str,
    project_ids: list[str],
    *,
    url: str = "http://127.0.0.1:1",
    discovery: DiscoveryFilter | None = None,
    discovery_interval_seconds: float = 300.0,
    step_details: bool = False,
) -> TargetConfig:
    """One OMS target's running configuration, as load_config would build it."""
    return TargetConfig(
        name=name,
        url=url,
        username=USERNAME,
        password=PASSWORD,
        api="auto",
        project_ids=tuple(project_ids),
        discovery=discovery,
        discovery_interval_seconds=discovery_interval_seconds,
        step_details=step_details,
    )


@dataclass
class ClientUnderTest:
    client: OmsClient
    session: HttpClient
    observed: list[tuple[float, Reason | None]]


@pytest.fixture
def replay() -> ReplayOms:
    return ReplayOms()


@pytest.fixture
async def replay_url(replay: ReplayOms, aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(replay.app(), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def make_client(
    replay_url: str,
) -> AsyncIterator[Callable[..., ClientUnderTest]]:
    sessions: list[HttpClient] = []

    def build(
        api: ApiChoice = "auto",
        *,
        timeout_seconds: float = 2.0,
        max_concurrency: int = 4,
        max_response_bytes: int = 1024 * 1024,
        password: str = PASSWORD,
    ) -> ClientUnderTest:
        session = make_session(
            base_url=replay_url,
            username=USERNAME,
            password=password,
            timeout_seconds=timeout_seconds,
        )
        sessions.append(session)
        observed: list[tuple[float, Reason | None]] = []
        transport = Transport(
            session=session,
            max_concurrency=max_concurrency,
            max_response_bytes=max_response_bytes,
            observer=lambda seconds, reason: observed.append((seconds, reason)),
        )
        client = OmsClient(transport=transport, api=api, oms_name="test")
        return ClientUnderTest(client, session, observed)

    yield build
    for session in sessions:
        await session.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate: run `make test`"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
