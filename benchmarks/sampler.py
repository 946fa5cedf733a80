"""Node CPU and memory over simulated time, read from the in-process simulator.

A thread reads every node's load each `step` simulated seconds. It reads the simulator's
load model directly (one lock hold, O(guests) per sample) instead of `Simulator.nodes()`,
which rescans every guest per node and costs ~0.8 s on 128 nodes / 10,000 guests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pvesim import Simulator

#: (cpu share clamped to 1, memory share) of one node, with and without the guests' noise.
Load = tuple[float, float]


@dataclass
class Series:
    """Samples at sim times `t` (seconds since the run started); per node, cpu and memory
    as shares (cpu clamped to 1 as PVE reports it), as sampled and as sustained (the guests'
    zero-mean noise left out: what a balancer's averages estimate, and the lower bound's
    loads)."""

    nodes: list[str]
    t: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    mem: dict[str, list[float]] = field(default_factory=dict)
    cpu_sustained: dict[str, list[float]] = field(default_factory=dict)
    mem_sustained: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.nodes:
            for series in (self.cpu, self.mem, self.cpu_sustained, self.mem_sustained):
                series.setdefault(name, [])

    def add(self, t: float, loads: dict[str, Load],
            sustained: dict[str, Load] | None = None) -> None:
        self.t.append(t)
        steady = loads if sustained is None else sustained
        for name in self.nodes:
            cpu, mem = loads.get(name, (0.0, 0.0))
            self.cpu[name].append(cpu)
            self.mem[name].append(mem)
            cpu, mem = steady.get(name, (0.0, 0.0))
            self.cpu_sustained[name].append(cpu)
            self.mem_sustained[name].append(mem)

    def to_dict(self) -> dict[str, object]:
        return {"nodes": self.nodes, "t": self.t, "cpu": self.cpu, "mem": self.mem,
                "cpu_sustained": self.cpu_sustained, "mem_sustained": self.mem_sustained}


def read_loads(sim: Simulator) -> tuple[float, dict[str, Load], dict[str, Load]]:
    """(sim epoch now, node -> load as sampled, node -> sustained load) in one lock hold."""
    cluster = sim.cluster
    with sim.lock:
        now = cluster.sync()
        loads, sustained = {}, {}
        for name, node in cluster.nodes.items():
            spec = node.spec
            for noise, out in ((True, loads), (False, sustained)):
                demand, mem = cluster.node_load(name, now, noise=noise)
                out[name] = (min(1.0, demand), mem / spec.memory if spec.memory else 0.0)
    return now, loads, sustained


class Sampler(threading.Thread):
    def __init__(self, sim: Simulator, t0: float, step: float) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.sim = sim
        self.t0 = t0
        self.step = step
        self.series = Series(list(sim.cluster.nodes))
        self._stop_event = threading.Event()

    def sample(self) -> None:
        now, loads, sustained = read_loads(self.sim)
        self.series.add(now - self.t0, loads, sustained)

    def run(self) -> None:
        next_at = self.t0
        while not self._stop_event.is_set():
            self.sample()
            next_at += self.step
            wait = (next_at - self.sim.now()) / self.sim.speed
            if wait < 0:  # fell behind (a slow lock): resynchronise instead of bursting
                next_at = self.sim.now()
                wait = 0.0
            self._stop_event.wait(wait)

    def stop(self) -> Series:
        self._stop_event.set()
        self.join(timeout=30)
        self.sample()
        return self.series


def wait_sim(sim: Simulator, until: float, check: object = None, poll: float = 0.5) -> None:
    """Sleep (real time) until the simulator's clock reaches epoch `until`; `check()` (if
    given) is called between naps and may raise to abort."""
    while True:
        left = (until - sim.now()) / sim.speed
        if left <= 0:
            return
        if callable(check):
            check()
        time.sleep(min(poll, left))
