"""One run: one scenario, one system, one fresh simulator, a fixed stretch of simulated time.

The simulator runs in this process (its HTTPS server in a thread), so node loads are sampled
from its model at a fixed simulated step, and its request and migration logs are read
directly at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.catalog import BenchScenario
from benchmarks.procs import wait_for
from benchmarks.sampler import Sampler, Series, wait_sim
from benchmarks.systems import System, SystemStats
from pvesim import MigrationRecord, RequestRecord, Simulator

#: Speed of the simulated clock while a system starts up: time all but stands still.
PAUSED = 1e-6


@dataclass
class RunResult:
    scenario: str
    system: str
    label: str
    speed: float
    duration: float
    t0: float
    series: Series
    migrations: list[MigrationRecord]
    requests: list[RequestRecord]
    max_in_flight: int
    stats: SystemStats
    real_seconds: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _first_request(sim: Simulator, system: System) -> bool:
    system.check()
    with sim.lock:
        return bool(sim.cluster.request_log)


def run_one(scenario: BenchScenario, data: dict[str, Any], system: System, speed: float,
            duration: float, workdir: Path, step: float = 5.0) -> RunResult:
    """Run `system` against a fresh simulator of `data` for `duration` simulated seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    sim = Simulator(data, speed=PAUSED, seed=0)
    server = sim.serve(host="127.0.0.1", port=0)
    error: str | None = None
    started = time.monotonic()
    paused_at = math.inf
    sampler: Sampler | None = None
    stats = SystemStats()
    try:
        system.prepare(sim, server, workdir)
        # The clock starts when the system's first request arrives: process start-up (Celery
        # beat, ProxLB's imports: a second or two of real time) would otherwise count as a
        # minute of simulated reaction time.
        system.go()
        wait_for(lambda: _first_request(sim, system), 120, f"{system.name}'s first API call",
                 interval=0.02)
        sim.set_speed(speed)
        t0 = sim.now()
        sampler = Sampler(sim, t0, step)
        sampler.start()
        wait_sim(sim, t0 + duration, check=system.check)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        t0 = sim.now() if sampler is None else sampler.t0
    finally:
        # Stop the clock first: the figures cover exactly `duration`, whatever the systems
        # still do while they shut down (their requests from then on are not counted).
        sim.set_speed(PAUSED)
        paused_at = time.time()
        series = sampler.stop() if sampler is not None else Series(list(sim.cluster.nodes))
        try:
            stats = system.stop()
        except Exception as exc:
            error = error or f"stop failed: {type(exc).__name__}: {exc}"
        migrations = sim.migration_log
        requests = [r for r in sim.request_log if r.real_time <= paused_at]
        max_in_flight = sim.max_concurrent_migrations
        sim.close()
    return RunResult(
        scenario=scenario.name, system=system.name, label=system.label, speed=speed,
        duration=series.t[-1] if series.t else 0.0, t0=t0, series=series,
        migrations=migrations, requests=requests, max_in_flight=max_in_flight, stats=stats,
        real_seconds=time.monotonic() - started, error=error)
