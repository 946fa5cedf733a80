"""The benchmark scenarios: files in `benchmarks/scenarios/` plus how long each one runs.

Every file is in the simulator's scenario format, except that a file holding only
`generate: {...}` is built at run time by `pvesim.scenario.generate(**...)` (the big clusters
would be megabytes of YAML). Durations are simulated seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pvesim.scenario import generate

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class BenchScenario:
    name: str
    #: simulated seconds of a full run, and of a `--quick` run (None: not in --quick)
    duration: float
    quick_duration: float | None
    #: one-line description for the report
    summary: str
    #: end-to-end runs; False: engine micro-benchmark and API cost only
    end_to_end: bool = True
    #: simulated time at which the sustained load is read for the lower bound (None: n/a)
    lower_bound_at: float | None = 60.0
    #: simulated seconds per real second for this scenario (None: the run's default)
    speed: float | None = None

    @property
    def path(self) -> Path:
        return SCENARIO_DIR / f"{self.name}.yaml"

    def load(self) -> dict[str, Any]:
        """The scenario as plain data the simulator accepts."""
        data = yaml.safe_load(self.path.read_text())
        if isinstance(data, dict) and set(data) == {"generate"}:
            return generate(**data["generate"], name=self.name)
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: not a scenario mapping")
        return data

    @property
    def size(self) -> tuple[int, int]:
        """(nodes, guests)"""
        data = self.load()
        return len(data.get("nodes", [])), len(data.get("guests", []))


MINUTE = 60.0

SCENARIOS: tuple[BenchScenario, ...] = (
    BenchScenario("balanced", 8 * MINUTE, 6 * MINUTE,
                  "4 equal nodes at 40-50% CPU / 45-55% memory: nothing to do"),
    BenchScenario("cpu-hot", 10 * MINUTE, 8 * MINUTE,
                  "pve1 at ~97% CPU for good, the others 35-45%"),
    BenchScenario("cpu-spike", 10 * MINUTE, 8 * MINUTE,
                  "pve1 bursts to 100% CPU for 10 s every 5 min, ~50% otherwise"),
    BenchScenario("mem-hot", 10 * MINUTE, 8 * MINUTE,
                  "pve1 at ~90% memory, the others ~45%"),
    BenchScenario("proactive", 10 * MINUTE, None,
                  "all below thresholds, pve1 memory ~24 points above the mean"),
    BenchScenario("affinity", 10 * MINUTE, 8 * MINUTE,
                  "pve1 at ~99% CPU; pinned/HA-ruled/passthrough VMs, anti-affinity pairs, "
                  "containers, a template"),
    BenchScenario("mixed-sizes", 10 * MINUTE, None,
                  "16/32/64/96-thread nodes; the small one at ~95% CPU"),
    BenchScenario("churn", 60 * MINUTE, None,
                  "5 nodes whose batch load follows phase-shifted 30-min waves for an hour",
                  lower_bound_at=None),
    BenchScenario("big", 40 * MINUTE, None,
                  "32 nodes / 1,500 guests, 4 hot nodes at ~95% CPU", speed=10.0),
    BenchScenario("huge", 90 * MINUTE, None,
                  "128 nodes / 10,000 guests, 8 hot nodes at ~95% CPU", speed=10.0),
)

BY_NAME = {s.name: s for s in SCENARIOS}


def get(name: str) -> BenchScenario:
    try:
        return BY_NAME[name]
    except KeyError:
        raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(BY_NAME)}") from None
