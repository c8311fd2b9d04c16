"""Start the real programs (simulator, exporter) as processes, and always end them."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SIM_PASSWORD = "sim-Pa55-never-leak"


@dataclass
class Running:
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


def _pump(stream: object, sink: list[str], lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)
        lines.put(line)


@contextmanager
def started(
    args: list[str], *, url_pattern: str, env: dict[str, str] | None = None, timeout: float = 20
) -> Iterator[Running]:
    """Run ``python -m oms_exporter ARGS`` until ``url_pattern`` shows; stop it afterwards."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "oms_exporter", *args],
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, output, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise RuntimeError(f"process did not start: {''.join(output)}")
            try:
                match = re.search(url_pattern, lines.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue
            if match:
                url = match.group(1)
        yield Running(process, url, output)
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any], *, timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``; return the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextmanager
def simulator(*extra: str) -> Iterator[Running]:
    args = ["simulate", "--port", "0", "--password", SIM_PASSWORD, *extra]
    with started(args, url_pattern=r"listening on (http://\S+)") as running:
        yield running


@contextmanager
def exporter(oms_url: str, project_ids: list[str], *extra: str, **env: str) -> Iterator[Running]:
    environment = {
        "OMS_EXPORTER_OMS_URL": oms_url,
        "OMS_EXPORTER_OMS_USERNAME": "admin",
        "OMS_EXPORTER_OMS_PASSWORD": SIM_PASSWORD,
        "OMS_EXPORTER_PROJECT_IDS": ",".join(project_ids),
        "OMS_EXPORTER_LISTEN_ADDRESS": "127.0.0.1:0",
        "OMS_EXPORTER_POLL_INTERVAL": "1",
        "OMS_EXPORTER_REQUEST_TIMEOUT": "2",
        **env,
    }
    pattern = r"listening on (\S+?:\d+)"
    with started(list(extra), url_pattern=pattern, env=environment) as running:
        running.url = "http://" + running.url
        yield running


def get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URLs only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post_json(url: str, body: object) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return int(response.status)


def ready(url: str) -> bool:
    """The exporter answers /readyz with 200 once its first poll round is done."""
    return get(url + "/readyz")[0] == 200


def scrape(url: str) -> str:
    status, body = get(url + "/metrics")
    assert status == 200, f"/metrics answered {status}"
    return body


def all_up(url: str, ids: list[str]) -> bool:
    body = scrape(url)
    return all(metric_value(body, "oms_project_up", project_id=pid) == 1.0 for pid in ids)


def wait_for(predicate: object, *, timeout: float = 15, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def metric_value(body: str, name: str, **labels: str) -> float | None:
    """Read one sample's value from exposition text; None if absent."""
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
