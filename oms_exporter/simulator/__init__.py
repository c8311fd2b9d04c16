"""A fake OMS for demo mode, tests and benchmarks: real HTTP, deterministic projects, faults.

Projects move through their lifecycle as a pure function of an injected clock
(`scenario`), and are listed in the real 4.x shape, connection infos and table mapping
included (`project`); the aiohttp app speaks either OMS API flavour and acts out faults (`app`),
in the answer shapes of `render`, over the config and counters of `state`, steered by the
`/_sim/` control API (`admin`); `verify` pages through the full verification's tables;
`cli` runs it as a process (`main`) or in-process (`start_simulator`).
`cli` is not imported here, so `python -m oms_exporter.simulator.cli` runs cleanly.
"""

from oms_exporter.simulator.app import SimulatorConfig, create_app

__all__ = ["SimulatorConfig", "create_app"]
