"""The exporter's own health, kept in a private prometheus-client registry."""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.platform_collector import PlatformCollector

from oms_exporter import __version__
from oms_exporter.model import Reason
from oms_exporter.oms.client import ClientObserver
from oms_exporter.oms.transport import RequestObserver

# The optional 4.x Actions whose availability is tracked per OMS: a closed set of labels.
OPTIONAL_ACTIONS = ("DescribeProjectSteps", "ListProjectFullVerifyResult")
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SelfMetrics:
    """Exporter-level and OMS-level metrics; bounded labels only (``oms``, ``reason``)."""

    def __init__(self) -> None:
        # `_created` series double every counter's lines and help no dashboard or alert here.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Gauge(
            "oms_exporter_build_info", "Build of this exporter, always 1.", ["version"], registry=r
        ).labels(__version__).set(1)
        self.oms_up = Gauge(
            "oms_up",
            "1 if this OMS answered well-formed API responses in the last poll round, else 0.",
            ["oms"],
            registry=r,
        )
        self.requests = Counter(
            "oms_api_requests", "HTTP requests sent to this OMS's API.", ["oms"], registry=r
        )
        self.request_errors = Counter(
            "oms_api_request_errors",
            "Failed HTTP requests to this OMS's API by reason.",
            ["oms", "reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "oms_api_request_duration_seconds",
            "Duration of HTTP requests to this OMS's API.",
            ["oms"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.projects = Gauge(
            "oms_exporter_projects", "Projects polled on this OMS.", ["oms"], registry=r
        )
        self.round_duration = Gauge(
            "oms_exporter_last_poll_round_duration_seconds",
            "How long the last poll round took.",
            registry=r,
        )
        self.round_timestamp = Gauge(
            "oms_exporter_last_poll_round_timestamp_seconds",
            "Unix time the last poll round ended; old while the poller is wedged.",
            registry=r,
        )
        self.rounds = Counter("oms_exporter_poll_rounds", "Poll rounds completed.", registry=r)
        self.poll_interval = Gauge(
            "oms_exporter_poll_interval_seconds", "Configured seconds between polls.", registry=r
        )
        self.reload_ok = Gauge(
            "oms_exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), else 0.",
            registry=r,
        )
        self.reload_timestamp = Gauge(
            "oms_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            registry=r,
        )
        self.discovered = Gauge(
            "oms_discovery_projects",
            "Projects the last successful ListProjects discovery returned, after filters.",
            ["oms"],
            registry=r,
        )
        self.discovery_timestamp = Gauge(
            "oms_discovery_last_success_timestamp_seconds",
            "Unix time of the last successful project discovery.",
            ["oms"],
            registry=r,
        )
        self.discovery_errors = Counter(
            "oms_discovery_errors",
            "Failed project discoveries by reason.",
            ["oms", "reason"],
            registry=r,
        )
        self.action_available = Gauge(
            "oms_api_action_available",
            "1 if this OMS answers this optional API Action, 0 if it refused it "
            "(asked again every 10 rounds).",
            ["oms", "action"],
            registry=r,
        )
        # --- what the OMS client repaired in hostile answers (oms/client.py) ---
        self.dropped_steps = Counter(
            "oms_exporter_dropped_steps",
            "Steps beyond the 64 kept per project, dropped from DescribeProjectSteps answers.",
            ["oms"],
            registry=r,
        )
        self.checkpoint_unit_conversions = Counter(
            "oms_exporter_checkpoint_unit_conversions",
            "Checkpoints OMS sent in milliseconds, converted to seconds.",
            ["oms"],
            registry=r,
        )
        # --- end of the OMS client's counters ---
        # Registered only when sharding is on: `_count` is a name promtool's lint rejects for
        # a gauge, yet it is the name the sharding contract asks for.
        self._shard_ordinal = Gauge(
            "oms_exporter_shard_ordinal", "This replica's shard index (0-based).", registry=None
        )
        self._shard_count = Gauge(
            "oms_exporter_shard_count", "Replicas the projects are split across.", registry=None
        )
        self._shards_registered = False
        # OMS names whose request metrics may be written: not those a reload removed.
        self._configured: set[str] = set()
        # --- supervision (runtime.py) ---
        self.task_restarts = Counter(
            "oms_exporter_task_restarts",
            "Times a supervised task (poller, prepare) died and was restarted.",
            ["task"],
            registry=r,
        )
        self.reload_ok.set(1)
        self.reload_timestamp.set_to_current_time()

    def set_shard(self, *, index: int, count: int) -> None:
        self._shard_ordinal.set(index)
        self._shard_count.set(count)
        if (count > 1) != self._shards_registered:
            for gauge in (self._shard_ordinal, self._shard_count):
                if count > 1:
                    self.registry.register(gauge)
                else:
                    self.registry.unregister(gauge)
            self._shards_registered = count > 1

    def request_observer(self, oms: str) -> RequestObserver:
        """Bind the per-request metrics of one OMS, so the transport stays metric-agnostic."""
        self._configured.add(oms)
        requests = self.requests.labels(oms)
        duration = self.request_duration.labels(oms)
        errors = self.request_errors
        configured = self._configured

        def observe(seconds: float, reason: Reason | None) -> None:
            if oms not in configured:  # removed by a reload while this request was in flight
                return
            requests.inc()
            duration.observe(seconds)
            if reason is not None:
                errors.labels(oms, reason.value).inc()

        return observe

    def client_observer(self, oms: str) -> ClientObserver:
        """Bind the counters of what one OMS's client repaired in its answers."""
        return ClientObserver(
            dropped_steps=self.dropped_steps.labels(oms).inc,
            checkpoint_converted=self.checkpoint_unit_conversions.labels(oms).inc,
        )

    def forget_oms(self, oms: str) -> None:
        """Drop the series of an OMS removed by a reload; its late requests write none."""
        self._configured.discard(oms)
        labelled = (
            self.oms_up,
            self.requests,
            self.request_duration,
            self.projects,
            self.discovered,
            self.discovery_timestamp,
            self.dropped_steps,
            self.checkpoint_unit_conversions,
        )
        for metric in labelled:
            with contextlib.suppress(KeyError):
                metric.remove(oms)
        for reason in Reason:
            for counter in (self.request_errors, self.discovery_errors):
                with contextlib.suppress(KeyError):
                    counter.remove(oms, reason.value)
        for action in OPTIONAL_ACTIONS:
            with contextlib.suppress(KeyError):
                self.action_available.remove(oms, action)
