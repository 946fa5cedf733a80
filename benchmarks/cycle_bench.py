"""One full evaluate, phase by phase, next to the floor measured in the same run (not a test).

Run: `python -m benchmarks.cycle_bench [--sizes 1500,10000,50000] [--cycles N] [--soak N]`.

For each size a synthetic cluster (`pvesim.scenario.generate`) is served by `python -m pvesim`
in its own process, with a private redis-server; this process runs `evaluate` back to back in
dry-run mode (it decides, records and migrates nothing) and measures, per deciding cycle:

* client CPU (this process's CPU time) against the floor: the CPU it takes to fetch the same
  `/cluster/resources` bytes with plain `requests` and parse them with `json.loads` (the one
  payload that grows with the cluster; every other read is small or cached), measured right
  before each cycle; the ratio is the median of each cycle's ratio to its own floor;
* wall time per phase: PVE reads (HTTP and JSON, through proxmoxer), snapshot building, the
  averages (node and guest EMA, proactive holds), the engine, and the rest (bookkeeping);
* Redis: round trips (client side) and commands (server side) per cycle, and which commands
  grow with the node count;
* with `--soak N`, the worker's resident memory over N more cycles (360 are 30 minutes of
  5-second cycles).

Goals (issue 16): client CPU per cycle <= 2x the floor at every size; <= 10 Redis round
trips per cycle and a command count that does not grow with guests; RSS flat over the soak.
Figures are printed next to their floor or goal; nothing fails on a time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from balancer.config import Config, parse_config
from balancer.heap import keep_large_buffers_off_the_heap
from balancer.pve.client import PveClient
from balancer.runtime import Runtime, evaluate
from balancer.state import StateStore
from benchmarks.procs import Children, RedisServer, free_port, wait_for
from pvesim.scenario import DEFAULT_TOKEN_VALUE, generate

#: guests -> nodes (80 guests a node, as the engine benchmark's sizes).
SIZES = {1500: 32, 10000: 128, 50000: 640}
TRACE = False
PHASES = ("pve reads", "snapshot", "averages", "engine", "bookkeeping")


@dataclass
class Counters:
    """What the patched hooks add up during one cycle."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    round_trips: int = 0
    #: The first command of each round trip (`--trace`).
    trips: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu.clear()
        self.round_trips = 0
        self.trips.clear()


COUNTERS = Counters()


def _timed(owner: Any, name: str, phase: str) -> None:
    """Wrap `owner.name` so its wall time adds to `phase` (outermost call only)."""
    original = getattr(owner, name)
    depth = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth["n"] += 1
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                spent = time.perf_counter() - start
                COUNTERS.seconds[phase] = COUNTERS.seconds.get(phase, 0.0) + spent
                used = time.process_time() - cpu
                COUNTERS.cpu[phase] = COUNTERS.cpu.get(phase, 0.0) + used

    setattr(owner, name, wrapper)


def _count_round_trips() -> None:
    command = redis.Redis.execute_command
    execute = redis.client.Pipeline.execute

    def one_command(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        COUNTERS.round_trips += 1
        COUNTERS.trips.append(str(args[0]) if args else "?")
        return command(self, *args, **kwargs)

    def one_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTERS.round_trips += 1
        COUNTERS.trips.append("pipeline:" + "+".join(str(c[0][0]) for c in self.command_stack))
        return execute(self, *args, **kwargs)

    redis.Redis.execute_command = one_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = one_pipeline  # type: ignore[method-assign]


def instrument() -> None:
    import balancer.pve.snapshot as snapshot
    import balancer.runtime.choose as choose
    # `balancer.runtime.evaluate` is also the name of a function the package exports.
    evaluate_module = importlib.import_module("balancer.runtime.evaluate")

    _timed(PveClient, "_send", "pve reads")
    _timed(snapshot, "build_snapshot", "snapshot")
    _timed(evaluate_module, "update_averages", "averages")
    _timed(choose, "decide", "engine")
    _count_round_trips()


@dataclass
class Served:
    url: str
    host_port: str
    token_header: str
    resources_bytes: int = 0


@contextmanager
def serve(guests: int, workdir: Path) -> Iterator[tuple[Served, RedisServer]]:
    nodes = SIZES.get(guests, max(2, guests // 80))
    scenario = generate(nodes=nodes, guests=guests, seed=7, hot_nodes=max(1, nodes // 16))
    path = workdir / f"cluster-{guests}.json"
    path.write_text(json.dumps(scenario))
    children = Children(workdir)
    try:
        port = free_port()
        children.spawn("pvesim", [sys.executable, "-m", "pvesim", "--scenario", str(path),
                                  "--port", str(port), "--speed", "1"])
        served = Served(f"https://127.0.0.1:{port}/api2/json", f"127.0.0.1:{port}",
                        f"PVEAPIToken=balancer@pve!balancer={DEFAULT_TOKEN_VALUE}")
        wait_for(lambda: _reachable(served), 120, f"pvesim with {guests:,} guests")
        store = RedisServer(children)
        store.start()
        yield served, store
    finally:
        children.stop()


def _reachable(served: Served) -> bool:
    try:
        _fetch(served)
        return True
    except requests.RequestException:
        return False


_SESSION = requests.Session()
#: As the client does: the environment (proxies, CA bundle) is not re-read per request.
_SESSION.trust_env = False


def _fetch(served: Served) -> bytes:
    """One GET on a kept-alive session, as proxmoxer's own session does."""
    answer = _SESSION.get(f"{served.url}/cluster/resources", verify=False, timeout=60,
                          headers={"Authorization": served.token_header})
    answer.raise_for_status()
    return answer.content


def floor_cpu(served: Served) -> float:
    """CPU seconds to fetch and parse the same /cluster/resources bytes once. Measured right
    before each cycle: this machine's speed drifts (a shared VM), and a floor taken minutes
    apart from the cycles it is compared with would put the drift into the ratio."""
    start = time.process_time()
    body = _fetch(served)
    json.loads(body)
    served.resources_bytes = len(body)
    return time.process_time() - start


def runtime(served: Served, redis_url: str) -> Runtime:
    config: Config = parse_config({
        "proxmox": {"hosts": [served.host_port], "user": "balancer@pve",
                    "token_name": "balancer", "token_value": DEFAULT_TOKEN_VALUE,
                    "verify_ssl": False, "timeout_seconds": 60},
        "redis": {"url": redis_url},
        "balancing": {"dry_run": True, "interval_seconds": 5},
    }, env={})
    store = StateStore.from_url(redis_url)
    client = PveClient(config.proxmox, cache=store.cache, clock=store.clock)
    return Runtime(config=config, client=client, store=store, clock=store.clock)


class NoDispatch:
    """Dry run: evaluate never dispatches."""

    def migrate(self, vmid: int, source: str, target: str, lock_token: str) -> None:
        raise AssertionError("dry run dispatched a migration")

    def poll(self, upid: str, lock_token: str, countdown: float, follower: str) -> None:
        raise AssertionError("dry run scheduled a poll")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Cycle:
    cpu: float
    wall: float
    phases: dict[str, float]
    phases_cpu: dict[str, float]
    round_trips: int
    commands: int
    per_command: Counter[str]
    action: str


def one_cycle(rt: Runtime, server: redis.Redis) -> Cycle:
    before = _commandstats(server)
    COUNTERS.reset()
    cpu, wall = time.process_time(), time.perf_counter()
    result = evaluate(rt, NoDispatch())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    trips = COUNTERS.round_trips
    if TRACE:
        print("   round trips:", ", ".join(COUNTERS.trips), file=sys.stderr)
    after = _commandstats(server)
    per_command = Counter({k: after.get(k, 0) - before.get(k, 0) for k in after})
    per_command["info"] -= 1  # our own INFO between the two snapshots
    phases: dict[str, float] = dict(COUNTERS.seconds)
    phases["bookkeeping"] = max(0.0, wall - sum(phases.values()))
    phases_cpu: dict[str, float] = dict(COUNTERS.cpu)
    phases_cpu["bookkeeping"] = max(0.0, cpu - sum(phases_cpu.values()))
    commands = sum(v for v in per_command.values() if v > 0)
    return Cycle(cpu, wall, phases, phases_cpu, trips, commands, +per_command, result.action)


def _commandstats(server: redis.Redis) -> dict[str, int]:
    info = server.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
            if isinstance(v, dict)}


def measure(guests: int, cycles: int, soak: int, workdir: Path) -> dict[str, Any]:
    with serve(guests, workdir) as (served, store):
        rt = runtime(served, store.url)
        server = redis.Redis.from_url(store.url)
        _fetch(served)  # the TLS handshake is not per cycle for either side
        for _ in range(2):  # warm: caches, scripts, connection pools
            one_cycle(rt, server)
        floors, deciding = [], []
        for _ in range(cycles):
            floor = floor_cpu(served)
            cycle = one_cycle(rt, server)
            if cycle.action != "skipped":
                floors.append(floor)
                deciding.append(cycle)
        if not deciding:
            raise RuntimeError(f"{guests:,} guests: no deciding cycle")
        rss_start = rss_mib()
        rss = [rss_start]
        for index in range(soak):
            one_cycle(rt, server)
            if (index + 1) % max(1, soak // 6) == 0:
                rss.append(rss_mib())
        rt.store.close()
        return summarise(guests, SIZES.get(guests, guests // 80), served, floors, deciding,
                         rss)


def summarise(guests: int, nodes: int, served: Served, floors: list[float], cycles: list[Cycle],
              rss: list[float]) -> dict[str, Any]:
    med = statistics.median
    commands: Counter[str] = Counter()
    for c in cycles:
        commands.update(c.per_command)
    return {
        "guests": guests, "nodes": nodes, "resources_bytes": served.resources_bytes,
        "cycles": len(cycles),
        "client_cpu_ms": med(c.cpu for c in cycles) * 1000,
        "floor_cpu_ms": med(floors) * 1000,
        #: Each cycle against the floor measured just before it (the drift left out).
        "ratio": med(c.cpu / f for c, f in zip(cycles, floors, strict=True) if f > 0),
        "phases_ms": {p: med(c.phases.get(p, 0.0) for c in cycles) * 1000 for p in PHASES},
        "phases_cpu_ms": {p: med(c.phases_cpu.get(p, 0.0) for c in cycles) * 1000
                          for p in PHASES},
        "wall_ms": med(c.wall for c in cycles) * 1000,
        "redis_round_trips": med(c.round_trips for c in cycles),
        "redis_commands": med(c.commands for c in cycles),
        "redis_by_command": {k: round(v / len(cycles), 1)
                             for k, v in commands.most_common()},
        "rss_mib": [round(r, 1) for r in rss],
    }


def render(figures: list[dict[str, Any]]) -> str:
    lines = []
    for f in figures:
        ratio = f["ratio"]
        lines.append(f"{f['guests']:,} guests / {f['nodes']} nodes "
                     f"(/cluster/resources {f['resources_bytes'] / 2**20:.1f} MiB)")
        lines.append(f"  client CPU per cycle {f['client_cpu_ms']:8.1f} ms   floor (fetch + "
                     f"parse the same bytes) {f['floor_cpu_ms']:7.1f} ms   ratio {ratio:4.1f}x "
                     f"(goal <= 2x)")
        phases = "  ".join(f"{p} {ms:.1f}" for p, ms in f["phases_ms"].items())
        lines.append(f"  wall per cycle {f['wall_ms']:.1f} ms: {phases}")
        cpu = "  ".join(f"{p} {ms:.1f}" for p, ms in f["phases_cpu_ms"].items())
        lines.append(f"  client CPU by phase, ms: {cpu}")
        lines.append(f"  Redis per cycle: {f['redis_round_trips']:.0f} round trips (goal <= 10),"
                     f" {f['redis_commands']:.0f} commands")
        top = ", ".join(f"{k} {v:g}" for k, v in list(f["redis_by_command"].items())[:8])
        lines.append(f"    by command: {top}")
        if len(f["rss_mib"]) > 1:
            rss = f["rss_mib"]
            lines.append(f"  RSS over the soak: {' -> '.join(f'{r:.0f}' for r in rss)} MiB "
                         f"({rss[-1] - rss[0]:+.1f} MiB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    keep_large_buffers_off_the_heap()  # as every worker process does (tasks/signals.py)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1500,10000,50000",
                        help="comma-separated guest counts (default 1500,10000,50000)")
    parser.add_argument("--cycles", type=int, default=10, help="measured cycles per size")
    parser.add_argument("--soak", type=int, default=0,
                        help="more cycles watching RSS (360 = 30 minutes of 5 s cycles)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--trace", action="store_true", help="list every cycle's round trips")
    args = parser.parse_args(argv)
    global TRACE
    TRACE = args.trace
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    instrument()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    figures = []
    with tempfile.TemporaryDirectory(prefix="cycle-bench-") as tmp:
        for guests in sizes:
            figures.append(measure(guests, args.cycles, args.soak, Path(tmp)))
            if not args.json:
                print(render(figures[-1:]), flush=True)
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

