"""The naive baseline: an OMS exporter written the way most hand-written exporters are.

A background loop polls every project and keeps its last answer as a dict; a
prometheus-client custom collector turns those dicts into generic metric families
(one ``GaugeMetricFamily`` per metric, every series rebuilt on every scrape), served by
prometheus-client's own threaded HTTP server, which gzips when asked. Same metrics
contract as oms-exporter (README's table, ~25 series per project), same polling (same
requests, same concurrency, DescribeProjectSteps too unless --no-step-details); only the
way /metrics is produced differs, and that is what the benchmark compares.

    BENCH_OMS_PASSWORD=... python bench/baseline_exporter.py --oms-url URL --projects 1000

Prints ``listening on http://127.0.0.1:PORT`` and then ``poll round N done`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# The value sets of the metrics contract, shared so the baseline exports the same series.
from oms_exporter.model import ALL_STATUSES as STATUSES
from oms_exporter.model import STEP_STATUSES

FEATURES = {
    "struct": "enableStructTransfer",
    "full": "enableFullTransfer",
    "incr": "enableIncrSync",
    "reverse_incr": "enableReverseIncrTransfer",
}
CHECKPOINTS = {"forward": "incrSyncCheckpoint", "reverse": "reverseIncrTransferCheckpoint"}
SETTLED = {"FINISHED", "RELEASED", "DELETED"}  # their steps no longer change: asked once
FULL_STEPS = {"FULL_TRANSFER", "FULL_MIGRATION"}
# stepInfo field of a full transfer step -> (family name suffix, HELP)
ROW_FAMILIES = {
    "processedRecords": ("processed_rows", "Rows processed."),
    "capacity": ("estimated_rows", "Rows estimated."),
    "srcRps": ("source_rows_per_second", "Source rows per second."),
    "dstRps": ("sink_rows_per_second", "Sink rows per second."),
}
INFO_FIELDS = {
    "name": "name",
    "type": "type",
    "source_type": "sourceEndpointType",
    "sink_type": "sinkEndpointType",
}


@dataclass
class Project:
    """What the poller last learned about one project: the raw answer, as most exporters keep it."""

    data: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    steps: list[dict[str, Any]] | None = None
    up: bool = False
    last_success: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


def number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


class OmsCollector(Collector):
    """Build every per-project family from the stored answers, on every scrape."""

    def __init__(self, oms: str, projects: dict[str, Project]) -> None:
        self.oms = oms
        self.projects = projects

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        base = ["oms", "project_id"]
        up = GaugeMetricFamily("oms_project_up", "1 if the last poll succeeded.", labels=base)
        status = GaugeMetricFamily(
            "oms_project_status", "Project status, one-hot.", labels=[*base, "status"]
        )
        step = GaugeMetricFamily(
            "oms_project_current_step", "Current step, always 1.", labels=[*base, "step"]
        )
        info_labels = [*base, "api", "kind", "alarm_level", *INFO_FIELDS, "labels"]
        info = GaugeMetricFamily("oms_project_info", "Project facts.", labels=info_labels)
        feature = GaugeMetricFamily(
            "oms_project_feature_enabled", "1 if the stage is on.", labels=[*base, "feature"]
        )
        struct = GaugeMetricFamily(
            "oms_project_struct_progress_ratio", "Structure progress, 0 to 1.", labels=base
        )
        full = GaugeMetricFamily(
            "oms_project_full_progress_ratio", "Full data progress, 0 to 1.", labels=base
        )
        checkpoint = GaugeMetricFamily(
            "oms_project_incr_sync_checkpoint_timestamp_seconds",
            "Incremental checkpoint as unix time.",
            labels=[*base, "direction"],
        )
        lag = GaugeMetricFamily(
            "oms_project_incr_sync_lag_seconds",
            "Scrape time minus checkpoint.",
            labels=[*base, "direction"],
        )
        success = GaugeMetricFamily(
            "oms_project_last_success_timestamp_seconds", "Last successful poll.", labels=base
        )
        errors = CounterMetricFamily(
            "oms_project_poll_errors", "Failed polls by reason.", labels=[*base, "reason"]
        )
        by_step = [*base, "step"]
        step_progress = GaugeMetricFamily(
            "oms_project_step_progress_ratio", "Progress of each step.", labels=by_step
        )
        step_status = GaugeMetricFamily(
            "oms_project_step_status", "Status of each step, one-hot.", labels=[*by_step, "status"]
        )
        rows = [
            GaugeMetricFamily(f"oms_project_full_transfer_{name}", text, labels=by_step)
            for name, text in ROW_FAMILIES.values()
        ]
        eta = GaugeMetricFamily(
            "oms_project_full_transfer_eta_seconds", "Seconds until full ends.", labels=by_step
        )
        steps = (step_progress, step_status, *rows, eta)
        ahead = 0.0
        for project_id, project in list(self.projects.items()):
            labels = [self.oms, project_id]
            up.add_metric(labels, 1.0 if project.up else 0.0)
            if project.last_success is not None:
                success.add_metric(labels, project.last_success)
            for reason, count in project.errors.items():
                errors.add_metric([*labels, reason], count)
            data = project.data
            if data is None:
                continue
            current = str(data.get("status") or "").upper()
            current = current if current in STATUSES else "UNKNOWN"
            for value in STATUSES:
                status.add_metric([*labels, value], 1.0 if value == current else 0.0)
            if data.get("currentStep"):
                step.add_metric([*labels, str(data["currentStep"])], 1.0)
            alarm = str(data.get("alarmLevel") or "UNKNOWN")
            details = project.details or {}
            kind = str(details.get("type") or "unknown").lower()
            facts = [str(details.get(key) or "") for key in INFO_FIELDS.values()]
            tags = ",".join(sorted(str(tag.get("name")) for tag in details.get("labels") or []))
            info.add_metric([*labels, "v4", kind, alarm, *facts, tags], 1.0)
            self.add_steps(labels, project.steps or [], steps)
            for name, key in FEATURES.items():
                feature.add_metric([*labels, name], 1.0 if data.get(key) else 0.0)
            for family, key in ((struct, "structTransferProgress"), (full, "fullTransferProgress")):
                ratio = number(data.get(key))
                if ratio is not None:
                    family.add_metric(labels, min(max(ratio / 100, 0.0), 1.0))
            for direction, key in CHECKPOINTS.items():
                seconds = number(data.get(key))
                if seconds is not None and seconds > 0:
                    checkpoint.add_metric([*labels, direction], seconds)
                    lag.add_metric([*labels, direction], max(now - seconds, 0.0))
                    ahead = max(ahead, seconds - now)
        skew = GaugeMetricFamily(
            "oms_clock_skew_seconds", "Newest checkpoint ahead of our clock.", labels=["oms"]
        )
        skew.add_metric([self.oms], ahead)
        yield from (up, status, step, info, feature, struct, full, *steps, checkpoint, lag)
        yield from (success, errors, skew)

    @staticmethod
    def add_steps(
        labels: list[str], answer: list[dict[str, Any]], families: tuple[GaugeMetricFamily, ...]
    ) -> None:
        """One series per step and metric, the full-transfer row counts from its stepInfo."""
        step_progress, step_status, *rows, eta = families
        for item in answer:
            name = str(item.get("name") or "UNKNOWN")
            ratio = number(item.get("progress"))
            if ratio is not None:
                step_progress.add_metric([*labels, name], min(max(ratio / 100, 0.0), 1.0))
            current = str(item.get("status") or "").upper()
            for known in STEP_STATUSES:
                step_status.add_metric([*labels, name, known], float(known == current))
            info = item.get("stepInfo") or {}
            if name not in FULL_STEPS or not isinstance(info, dict):
                continue
            values = {key: number(info.get(key)) for key in ROW_FAMILIES}
            for family, row_value in zip(rows, values.values(), strict=True):
                if row_value is not None:
                    family.add_metric([*labels, name], row_value)
            done, total, rate = values["processedRecords"], values["capacity"], values["dstRps"]
            if done is not None and total is not None and rate:
                eta.add_metric([*labels, name], max(0.0, total - done) / rate)


class Poller:
    """Poll every project with `concurrency` workers, every `interval` seconds."""

    def __init__(
        self,
        *,
        url: str,
        auth: str,
        ids: list[str],
        concurrency: int,
        interval: float,
        step_details: bool,
    ) -> None:
        self.step_details = step_details
        self.url = url.rstrip("/") + "/api/v2?Action="
        self.auth = auth
        self.ids = ids
        self.concurrency = concurrency
        self.interval = interval
        self.projects: dict[str, Project] = {pid: Project() for pid in ids}
        self.requests = Counter("oms_api_requests", "HTTP requests sent to OMS.", ["oms"])
        self.round_seconds = Gauge(
            "oms_exporter_last_poll_round_duration_seconds", "Duration of the last round."
        )
        self.rounds = Counter("oms_exporter_poll_rounds", "Poll rounds completed.")
        self.rounds_done = 0

    async def call(self, session: aiohttp.ClientSession, action: str, pid: str) -> Any:
        self.requests.labels("sim").inc()
        async with session.post(self.url + action, json={"id": pid}) as response:
            response.raise_for_status()
            answer = await response.json()
        if not answer.get("success"):
            raise ValueError(str(answer.get("code")))
        return answer["data"]

    async def poll(self, session: aiohttp.ClientSession, pid: str) -> None:
        project = self.projects[pid]
        try:
            if project.details is None:
                project.details = await self.call(session, "DescribeProject", pid)
            project.data = await self.call(session, "DescribeProjectProgress", pid)
            settled = project.steps is not None and project.data.get("status") in SETTLED
            if self.step_details and not settled:
                project.steps = await self.call(session, "DescribeProjectSteps", pid)
            project.up, project.last_success = True, time.time()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            project.up = False
            reason = type(exc).__name__.lower()
            project.errors[reason] = project.errors.get(reason, 0) + 1

    async def poll_round(self, session: aiohttp.ClientSession) -> None:
        queue = iter(self.ids)

        async def worker() -> None:
            for pid in queue:  # the shared iterator hands each id to exactly one worker
                await self.poll(session, pid)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        headers = {"Accept": "application/json", "Authorization": self.auth}
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as session:
            while not stop.is_set():
                started = time.monotonic()
                await self.poll_round(session)
                self.round_seconds.set(time.monotonic() - started)
                self.rounds.inc()
                self.rounds_done += 1
                print(f"poll round {self.rounds_done} done", flush=True)
                wait = max(0.0, self.interval - (time.monotonic() - started))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    continue


async def serve(args: argparse.Namespace) -> int:
    password = os.environ.get(args.password_env, "")
    token = base64.b64encode(f"{args.username}:{password}".encode()).decode("ascii")
    ids = [f"p_sim_{index:06d}" for index in range(1, args.projects + 1)]
    poller = Poller(
        url=args.oms_url,
        auth=f"Basic {token}",
        ids=ids,
        concurrency=args.concurrency,
        interval=args.interval,
        step_details=args.step_details,
    )
    REGISTRY.register(OmsCollector("sim", poller.projects))
    server, _thread = start_http_server(args.port, addr="127.0.0.1")
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await poller.run(stop)
    finally:
        server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--oms-url", required=True, help="simulator base URL")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password-env", default="BENCH_OMS_PASSWORD")
    parser.add_argument("--projects", type=int, required=True, help="bulk projects p_sim_...")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1, 0 picks one")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--step-details",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="poll DescribeProjectSteps and export per-step series, as oms-exporter does",
    )
    args = parser.parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
