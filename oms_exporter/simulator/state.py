"""What one simulated OMS is (its config) and what changes while it runs (its state)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final, Literal, cast

from aiohttp import web

from oms_exporter.simulator import scenario
from oms_exporter.simulator.scenario import Api, ProjectDef, Snapshot

Scenario = Literal["demo", "bulk"]
#: The read-only 4.x Actions the simulator answers; ``without_actions`` removes some.
V4_ACTIONS: Final = (
    "ListProjects",
    "DescribeProject",
    "DescribeProjectProgress",
    "DescribeProjectSteps",
    "ListProjectFullVerifyResult",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """How to simulate one OMS: its API flavour, its projects, its credentials, its clock."""

    api: Api = "v4"
    scenario: Scenario = "demo"
    projects: int = 1000  # bulk scenario only
    username: str = "admin"
    password: str = field(default="oms-demo", repr=False)  # never in logs or reprs
    time_scale: float = 1.0
    fault_rate: float = 0.0
    seed: int = 0
    # (project ID, fault) pairs set at start and after every reset, e.g. for a soak.
    faults: tuple[tuple[str, str], ...] = ()
    # Tables in each project's transferMapping (ListProjects items, DescribeProject).
    tables_per_project: int = 8
    # 4.x Actions this OMS does not have (an older OMS): answered PARAM_ERROR.
    without_actions: tuple[str, ...] = ()
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        """Refuse settings the simulator cannot act out, before any server starts."""
        if self.api not in ("v4", "v3"):
            raise ValueError(f"api must be v4 or v3, not {self.api!r}")
        if self.scenario not in ("demo", "bulk"):
            raise ValueError(f"scenario must be demo or bulk, not {self.scenario!r}")
        if self.projects < 0 or self.time_scale <= 0 or not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("need projects >= 0, time_scale > 0 and 0 <= fault_rate <= 1")
        if self.tables_per_project < 0:
            raise ValueError("need tables_per_project >= 0")
        for action in self.without_actions:
            if action not in V4_ACTIONS:
                raise ValueError(f"without_actions: {action!r} is not one of {list(V4_ACTIONS)}")
        for project_id, fault in self.faults:
            if fault not in scenario.FAULTS:
                raise ValueError(
                    f"fault of {project_id!r} must be one of {sorted(scenario.FAULTS)}"
                )


class SimState:
    """Everything that changes while one simulator runs: projects, switches, counters."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.baseline: tuple[ProjectDef, ...] = tuple(
            scenario.demo_projects()
            if config.scenario == "demo"
            else scenario.bulk_projects(config.projects)
        )
        self.rng = random.Random(config.seed)
        self._credentials = f"{config.username}:{config.password}".encode()
        # The header every well-behaved client sends, checked first: decoding base64 on
        # each of the benchmark's thousands of requests per second is measurable.
        self._usual_header = b"Basic " + base64.b64encode(self._credentials)
        self.shutdown = asyncio.Event()  # set on app shutdown: releases hanging requests
        self.hanging = 0
        self.seq = 0
        self.reset()

    def reset(self) -> None:
        """Restart every lifecycle from the scenario; forget overrides but the configured faults."""
        self.projects: dict[str, ProjectDef] = {p.id: p for p in self.baseline}
        for project_id, fault in self.config.faults:
            defn = self.projects.get(project_id)
            if defn is None:
                raise ValueError(f"no project {project_id!r} to give the fault {fault!r}")
            self.projects[project_id] = replace(defn, fault=cast(scenario.Fault, fault))
        self.started_at = self.config.clock()
        self.down = False
        self.paths: Counter[str] = Counter()
        self.per_project: Counter[str] = Counter()
        self.total = 0

    def snapshot(self, defn: ProjectDef) -> Snapshot:
        """Compute a project's answer at the injected clock's now."""
        return scenario.snapshot(
            defn,
            now=self.config.clock(),
            started_at=self.started_at,
            time_scale=self.config.time_scale,
        )

    def authorized(self, header: str | None) -> bool:
        """Check HTTP Basic credentials, comparing in constant time."""
        raw = (header or "").encode("utf-8", "surrogateescape")
        if hmac.compare_digest(raw, self._usual_header):
            return True
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            return False
        return hmac.compare_digest(given, self._credentials)


STATE: Final = web.AppKey("oms_simulator_state", SimState)
