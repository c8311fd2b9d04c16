"""Processes and probes of the benchmark: start and always stop the programs, read their cost.

Every process is started on 127.0.0.1 and ended by pid in a ``finally``; every wait has a
deadline. CPU is read from ``/proc/PID/task/*/schedstat`` (nanoseconds, the clock behind
CLOCK_PROCESS_CPUTIME_ID) so a 100-project round is not lost in 10 ms ticks.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
USERNAME = "admin"
PASSWORD = "bench-not-a-secret"  # noqa: S105 - the local simulator's throwaway password
PASSWORD_ENV = "BENCH_OMS_PASSWORD"  # noqa: S105 - the variable's name, not a password
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
# No request for this long means no poll round runs: rounds send hundreds per second.
QUIET_SECONDS = 0.25


class BenchError(RuntimeError):
    """A program under test did not behave: the run stops with this message."""


@dataclass
class Process:
    """A started program: its handle, the URL it announced, and everything it printed."""

    popen: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_line(self, pattern: str, *, timeout_seconds: float) -> re.Match[str]:
        """Wait until the program prints a line matching `pattern`."""
        deadline = time.monotonic() + timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.popen.poll() is not None and self.lines.empty():
                break
            try:
                match = re.search(pattern, self.lines.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                continue
            if match:
                return match
        tail = "".join(self.output[-20:])
        raise BenchError(f"no line matching {pattern!r} in {timeout_seconds:g} s:\n{tail}")


def _pump(stream: IO[str], sink: list[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        sink.append(line)
        lines.put(line)
        del sink[:-200]  # keep the tail for error messages, not a 10-minute log


def stop(popen: subprocess.Popen[str], *, timeout_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it will not go; always reaped."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout_seconds)


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)  # loaded once here: dlopen after fork could deadlock
    except OSError:
        return None


_LIBC = _load_libc()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the benchmark itself is killed."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):  # else the finally blocks still stop it
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_env() -> dict[str, str]:
    """This environment without OMS_EXPORTER_* settings, which would change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}


@contextmanager
def started(
    argv: list[str], *, ready: str, env: dict[str, str] | None = None, timeout_seconds: float
) -> Iterator[Process]:
    """Run `argv` until it prints a line matching `ready` (group 1: its URL); stop it after."""
    popen = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**clean_env(), PASSWORD_ENV: PASSWORD, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
    )
    try:
        process = Process(popen, url="")
        assert popen.stdout is not None
        threading.Thread(
            target=_pump, args=(popen.stdout, process.output, process.lines), daemon=True
        ).start()
        process.url = process.wait_for_line(ready, timeout_seconds=timeout_seconds).group(1)
        yield process
    finally:
        stop(popen)


def simulator(projects: int) -> AbstractContextManager[Process]:
    """The built-in OMS simulator, bulk scenario, 4.x API, on a free port of 127.0.0.1."""
    argv = [PYTHON, "-m", "oms_exporter", "simulate", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--scenario", "bulk", "--projects", str(projects), "--api", "v4"]
    argv += ["--username", USERNAME, "--password", PASSWORD]
    return started(argv, ready=r"listening on (http://\S+)", timeout_seconds=30 + projects / 500)


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of `pid`, in seconds (user + system)."""
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total_ns += int(stat.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return _cpu_from_stat(pid)
    return total_ns / 1e9


def _cpu_from_stat(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class OtherLoad:
    """CPU used meanwhile by processes other than the benchmark and the programs it started.

    The machine's busy time (/proc/stat) minus this process's and its reaped children's
    (os.times): read it once every child has ended. Much above zero means the figures
    were taken on a busy machine.
    """

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._busy = _machine_busy_seconds()
        self._ours = _own_and_children_seconds()

    def cores(self) -> float:
        wall = time.monotonic() - self._started
        busy = _machine_busy_seconds() - self._busy
        ours = _own_and_children_seconds() - self._ours
        return max(0.0, busy - ours) / wall if wall > 0 else 0.0


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS  # up to steal; guests are in user


def _own_and_children_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def code_digest() -> str:
    """Short hash of the exporter's source as it is on disk now: each scenario's processes
    run what was there when they started, and a checkout edited mid-run shows up here."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "oms_exporter").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class Fetched:
    status: int
    seconds: float
    body: bytes
    encoding: str


# One buffer for every answer, made before any timer runs: growing one while timing cost
# about 90 MB of allocating and copying per 44 MB answer. The baseline's bodies are the
# largest, about 120 MB at 10,000 projects.
_BUFFERS: list[bytearray] = []


def _buffer() -> bytearray:
    if not _BUFFERS:
        _BUFFERS.append(bytearray(256 * 1024 * 1024))
    return _BUFFERS[0]


def fetch(url: str, *, gzip: bool = False, timeout_seconds: float = 60.0) -> Fetched:
    """GET `url` on a fresh connection, timing connect to last byte; the body stays as sent.

    A plain socket read into one buffer, as fast as the connection gives bytes: reading a
    44 MB chunked body through http.client took 50-90 ms more than curl, which measured
    the client, not the exporter. The answer is parsed once the timer has stopped.
    """
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    request += "Accept-Encoding: gzip\r\n" if gzip else "Accept-Encoding: identity\r\n"
    buffer = _buffer()
    size = 0
    started_at = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout_seconds) as connection:
        connection.sendall((request + "\r\n").encode())
        while True:
            if size == len(buffer):
                buffer.extend(bytes(len(buffer)))  # larger than any answer measured so far
            got = connection.recv_into(memoryview(buffer)[size:])
            if not got:
                break
            size += got
    seconds = time.perf_counter() - started_at
    return _parse_answer(bytes(memoryview(buffer)[:size]), seconds)


def _parse_answer(raw: bytes, seconds: float) -> Fetched:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, at = bytearray(), 0
        while True:
            line_end = rest.index(b"\r\n", at)
            length = int(rest[at:line_end].split(b";")[0], 16)
            if length == 0:
                break
            body += rest[line_end + 2 : line_end + 2 + length]
            at = line_end + 2 + length + 2
        payload = bytes(body)
    elif "content-length" in headers:
        payload = rest[: int(headers["content-length"])]
    else:
        payload = rest
    return Fetched(
        int(status_line.split()[1]), seconds, payload, headers.get("content-encoding", "")
    )


def wait_until(
    predicate: Callable[[], bool], *, timeout_seconds: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise BenchError(f"timed out after {timeout_seconds:g} s waiting for {what}")


class Oms:
    """The simulator as the benchmark watches it: its request counter shows poll rounds."""

    def __init__(self, url: str) -> None:
        self.url = url

    def total(self) -> int:
        answer = fetch(self.url + "/_sim/requests/total", timeout_seconds=10)
        return int(json.loads(answer.body)["total"])

    def actions(self) -> dict[str, int]:
        """Requests answered so far per 4.x Action (the full counters: ask between rounds)."""
        return self.counters()[1]

    def counters(self) -> tuple[int, dict[str, int]]:
        """The total and the per-Action counts of one answer: comparing the total with the
        one a quiet moment returned shows whether a round began before they were read."""
        answer = json.loads(fetch(self.url + "/_sim/requests", timeout_seconds=30).body)
        prefix = "/api/v2?Action="
        paths: dict[str, int] = answer["paths"]
        actions = {k.removeprefix(prefix): int(v) for k, v in paths.items() if k.startswith(prefix)}
        return int(answer["total"]), actions

    def wait_quiet(self, *, quiet_seconds: float = QUIET_SECONDS, timeout_seconds: float) -> int:
        """Wait until nobody has asked OMS anything for `quiet_seconds`; return the total."""
        deadline = time.monotonic() + timeout_seconds
        last, since = self.total(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now_total = self.total()
            if now_total != last:
                last, since = now_total, time.monotonic()
            elif time.monotonic() - since >= quiet_seconds:
                return last
        raise BenchError(
            f"OMS was never quiet for {quiet_seconds:g} s in {timeout_seconds:g} s: "
            "poll rounds run back to back; use a longer --interval"
        )

    def wait_round(self, *, after_total: int, timeout_seconds: float) -> int:
        """Wait for the next poll round: requests beyond `after_total`, then quiet again."""
        deadline = time.monotonic() + timeout_seconds
        wait_until(
            lambda: self.total() > after_total,
            timeout_seconds=timeout_seconds,
            what="the next poll round",
            every=0.02,
        )
        return self.wait_quiet(timeout_seconds=max(deadline - time.monotonic(), 1.0))


def metric(body: str, name: str) -> float:
    """Read an unlabelled sample's value from exposition text."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
    if match is None:
        raise BenchError(f"{name} missing from /metrics")
    return float(match.group(1))


def count_samples(body: str, *, name: str | None = None, value: float | None = None) -> int:
    """Count sample lines, optionally of one metric and with one value."""
    count = 0
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        if name is not None and not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if value is not None and float(line.rsplit(" ", 1)[1]) != value:
            continue
        count += 1
    return count


_PROJECT_ID = re.compile(r'[{,]project_id="([^"]*)"')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series_by_project(body: str) -> dict[str, Counter[str]]:
    """Per project (its `project_id` label), the samples of each metric name.

    What a project costs on /metrics: its samples are what Prometheus stores per scrape.
    """
    projects: dict[str, Counter[str]] = {}
    for line in body.splitlines():
        brace = line.find("{")
        if brace <= 0 or line.startswith("#"):
            continue
        match = _PROJECT_ID.search(line, brace)
        if match is not None:
            projects.setdefault(match.group(1), Counter())[line[:brace]] += 1
    return projects


def label_values(body: str, name: str, label: str) -> dict[str, str]:
    """`label`'s value in each project's `name` sample (the last one, if several)."""
    values: dict[str, str] = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            labels = dict(_LABEL.findall(line[len(name) + 1 : line.rfind("}")]))
            if "project_id" in labels and label in labels:
                values[labels["project_id"]] = labels[label]
    return values
