"""Figures of one run, from the simulator's own logs and the sampled node loads.

Definitions (all times simulated, from the run's start):

* issued: migrate POSTs the system sent (`.../qemu|lxc/{id}/migrate`), whatever the answer.
* failed: POSTs PVE refused, migration tasks that did not end OK, and HA requests
  (`hamigrate`) after which HA never started the move.
* ping-pong: a completed move whose target is a node that guest already left in this run.
* max in flight: most `qmigrate`/`vzmigrate` tasks running at once (the simulator's count).
* saturation: node-seconds above cpu_max or memory_max (instantaneous, as sampled) after
  the first EMA window; relief: end of the last sample with any node above either threshold
  (0 if none ever was, None if still so at the end), on the sustained loads (the guests'
  zero-mean noise left out, as the lower bound reads them) and as sampled. A node relieved
  to just under a threshold keeps crossing it in its samples: the sampled relief then lasts
  until the end although the sustained load is under the line.
* imbalance: PVE 9.2's measure over the last minute: node load = (cpu + memory) / 2,
  CV = stdev / mean over nodes, normalised by sqrt(n - 1) (0 = even, 1 = all on one node);
  spread = max - min node load.
* API calls per cycle: pve-balancer's evaluate cycles are counted from the worker's task
  log; ProxLB's runs are its `GET /nodes` calls (one per pass), and its calls per pass
  count complete passes only.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.run import RunResult
from benchmarks.systems import PROD_INTERVAL, latency_summary

CPU_MAX = 0.8
MEMORY_MAX = 0.8
EMA_WINDOW = 60.0
FINAL_WINDOW = 60.0

_MIGRATE_POST = re.compile(r"^/nodes/[^/]+/(qemu|lxc)/\d+/migrate$")
MOVE_TYPES = ("qmigrate", "vzmigrate")

#: pve-balancer's reads that come from the shared cache (TTL in real seconds, see
#: balancer.pve.client): their count per cycle shrinks with the speed factor in a benchmark.
CACHED_READS = {"/cluster/ha/rules": 60.0, "/cluster/ha/status/manager_status": 60.0,
                "/cluster/options": 60.0, "/cluster/tasks": 10.0}


def normalise_path(path: str) -> str:
    path = re.sub(r"UPID:[^/]+", "{upid}", path)
    path = re.sub(r"^/nodes/[^/]+", "/nodes/{node}", path)
    path = re.sub(r"/(qemu|lxc)/\d+", r"/\1/{vmid}", path)
    path = re.sub(r"^/pools/[^/]+", "/pools/{poolid}", path)
    return path


@dataclass
class MoveEvent:
    vmid: int
    source: str
    target: str
    kind: str
    start: float
    end: float | None
    ok: bool | None


@dataclass
class Metrics:
    scenario: str
    system: str
    label: str
    duration: float
    speed: float
    issued: int = 0
    moves_ok: int = 0
    failed: int = 0
    in_progress: int = 0
    ping_pongs: int = 0
    max_in_flight: int = 0
    saturation_node_s: float = 0.0
    saturation_cpu_node_s: float = 0.0
    saturation_mem_node_s: float = 0.0
    relief_s: float | None = 0.0
    relief_sampled_s: float | None = 0.0
    imbalance_start: float = math.nan
    imbalance_end: float = math.nan
    spread_end: float = math.nan
    api_calls: int = 0
    cycles: int = 0
    api_per_cycle: float = math.nan
    api_per_cycle_measured: float = math.nan
    redis_per_cycle: float | None = None
    latency_p50_ms: float = math.nan
    latency_p99_ms: float = math.nan
    all_cycles_p50_ms: float = math.nan
    deciding_cycles: int = 0
    api_errors: dict[str, int] = field(default_factory=dict)
    redis_top: dict[str, int] = field(default_factory=dict)
    move_reasons: dict[str, int] = field(default_factory=dict)
    api_by_endpoint: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    events: list[MoveEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["events"] = [asdict(e) for e in self.events]
        return out


def move_events(run: RunResult) -> list[MoveEvent]:
    """Every migration-related task of the run, times relative to its start."""
    events = []
    for m in run.migrations:
        ok = None if m.exitstatus is None else m.exitstatus == "OK"
        events.append(MoveEvent(m.vmid, m.source, m.target, m.type, m.started - run.t0,
                                None if m.ended is None else m.ended - run.t0, ok))
    return sorted(events, key=lambda e: e.start)


def count_ping_pongs(events: list[MoveEvent]) -> int:
    left: dict[int, set[str]] = defaultdict(set)
    found = 0
    done = [e for e in events if e.kind in MOVE_TYPES and e.ok]
    for e in sorted(done, key=lambda e: e.end or e.start):
        if e.target in left[e.vmid]:
            found += 1
        left[e.vmid].add(e.source)
    return found


def node_load(run: RunResult, i: int, name: str) -> float:
    return (run.series.cpu[name][i] + run.series.mem[name][i]) / 2


def imbalance(loads: list[float]) -> float:
    """PVE 9.2's normalised coefficient of variation of node loads (0..1)."""
    n = len(loads)
    mean = sum(loads) / n if n else 0.0
    if n < 2 or mean <= 0:
        return 0.0
    return statistics.pstdev(loads) / mean / math.sqrt(n - 1)


def _window_loads(run: RunResult, start: float, end: float) -> dict[str, float]:
    s = run.series
    idx = [i for i, t in enumerate(s.t) if start <= t <= end] or [len(s.t) - 1]
    return {n: sum(node_load(run, i, n) for i in idx) / len(idx) for n in s.nodes}


def saturation(run: RunResult) -> tuple[float, float, float]:
    """(node-s above either threshold, above cpu_max, above memory_max) after the EMA
    window, as sampled."""
    s = run.series
    either = cpu_s = mem_s = 0.0
    for i, t in enumerate(s.t):
        if t < EMA_WINDOW:
            continue
        dt = (s.t[i + 1] - t) if i + 1 < len(s.t) else 0.0
        for n in s.nodes:
            c, m = s.cpu[n][i] > CPU_MAX, s.mem[n][i] > MEMORY_MAX
            either += dt if (c or m) else 0.0
            cpu_s += dt if c else 0.0
            mem_s += dt if m else 0.0
    return either, cpu_s, mem_s


def relief(run: RunResult, sustained: bool) -> float | None:
    """End of the last sample with a node above either threshold: 0 if none ever was, None
    if one still is at the end."""
    s = run.series
    cpu, mem = (s.cpu_sustained, s.mem_sustained) if sustained else (s.cpu, s.mem)
    last_hot: int | None = None
    for i in range(len(s.t)):
        if any(cpu[n][i] > CPU_MAX or mem[n][i] > MEMORY_MAX for n in s.nodes):
            last_hot = i
    if last_hot is None:
        return 0.0
    return s.t[last_hot + 1] if last_hot + 1 < len(s.t) else None


def measure(run: RunResult) -> Metrics:
    met = Metrics(run.scenario, run.system, run.label, run.duration, run.speed)
    requests = run.requests
    events = move_events(run)
    met.events = events
    posts = [r for r in requests if r.method == "POST" and _MIGRATE_POST.match(r.path)]
    met.issued = len(posts)
    refused = sum(1 for r in posts if r.status >= 300)
    moves = [e for e in events if e.kind in MOVE_TYPES]
    met.moves_ok = sum(1 for e in moves if e.ok)
    met.in_progress = sum(1 for e in moves if e.ok is None)
    failed_tasks = sum(1 for e in events if e.ok is False)
    dropped = 0
    for e in events:
        if e.kind == "hamigrate" and e.ok and not any(
                m.vmid == e.vmid and m.start >= e.start for m in moves):
            dropped += 1
    met.failed = refused + failed_tasks + dropped
    met.ping_pongs = count_ping_pongs(events)
    met.max_in_flight = run.max_in_flight
    if run.series.t:
        either, cpu_s, mem_s = saturation(run)
        met.saturation_node_s, met.saturation_cpu_node_s = either, cpu_s
        met.saturation_mem_node_s = mem_s
        met.relief_s = relief(run, sustained=True)
        met.relief_sampled_s = relief(run, sustained=False)
        first = _window_loads(run, 0.0, 10.0)
        last = _window_loads(run, run.series.t[-1] - FINAL_WINDOW, run.series.t[-1])
        met.imbalance_start = imbalance(list(first.values()))
        met.imbalance_end = imbalance(list(last.values()))
        met.spread_end = max(last.values()) - min(last.values())
    met.api_calls = len(requests)
    errors = Counter(f"{r.method} {normalise_path(r.path)} -> {r.status}"
                     for r in requests if r.status >= 300)
    met.api_errors = dict(errors.most_common())
    stats = run.stats
    partial: str | None = None
    if run.system == "pve-balancer":
        met.cycles = stats.cycles
        if stats.cycles:
            met.api_per_cycle_measured = len(requests) / stats.cycles
            cached = sum(1 for r in requests if r.path in CACHED_READS)
            # At production timings the cached reads cost one call per TTL: 3 per 60 s and
            # 1 per 10 s at a 5 s interval = 0.75 per cycle.
            amortised = sum(PROD_INTERVAL / ttl for ttl in CACHED_READS.values())
            met.api_per_cycle = (len(requests) - cached) / stats.cycles + amortised
            if stats.redis_commands is not None:
                met.redis_per_cycle = stats.redis_commands / stats.cycles
        met.latency_p50_ms, met.latency_p99_ms = latency_summary(stats.decide_latencies_ms)
        met.all_cycles_p50_ms = latency_summary(stats.cycle_latencies_ms)[0]
        met.deciding_cycles = len(stats.decide_latencies_ms)
    else:
        # A pass starts with GET /nodes. Only complete passes count: the last one may have
        # been cut by the end of the run, and dividing by it understated a pass (2,700-3,500
        # reported on big where a full pass is ~4,500 reads).
        starts = [i for i, r in enumerate(requests) if r.method == "GET" and r.path == "/nodes"]
        met.cycles = len(starts)
        if len(starts) >= 2:
            met.api_per_cycle = met.api_per_cycle_measured = starts[-1] / (len(starts) - 1)
        elif starts:
            met.api_per_cycle = met.api_per_cycle_measured = float(len(requests))
            partial = ("one pass started and the run ended: its reads so far are a lower "
                       "bound of one pass")
    met.redis_top = dict(stats.redis_top)
    met.move_reasons = dict(stats.move_reasons)
    met.api_by_endpoint = dict(Counter(f"{r.method} {normalise_path(r.path)}"
                                       for r in requests).most_common())
    met.skipped = dict(stats.skipped)
    met.notes = list(stats.notes) + ([partial] if partial else [])
    if run.error:
        met.notes.insert(0, f"run error: {run.error}")
    return met
