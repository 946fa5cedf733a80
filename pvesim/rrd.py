"""RRD history (`.../rrddata`) synthesised from the load model, the way pvestatd would have
recorded it: fixed-step buckets aggregated with AVERAGE or MAX.

Because loads and placements are functions of simulated time, history before the simulation
start is the scenario's steady state, and history after it includes every migration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pvesim.cluster import Cluster

# timeframe -> (step seconds, rows); PVE 9 keeps 60 s resolution for hour and day.
TIMEFRAMES: dict[str, tuple[int, int]] = {
    "hour": (60, 60),
    "day": (60, 1440),
    "week": (1800, 336),
    "month": (1800, 1440),
    "year": (21600, 1440),
    "decade": (604800, 520),
}
# Load samples averaged (or maxed) into one row; long timeframes use one to stay cheap.
SAMPLES_PER_BUCKET: dict[str, int] = {"hour": 3}


def _buckets(now: float, timeframe: str) -> list[tuple[int, list[float]]]:
    step, rows = TIMEFRAMES[timeframe]
    last = int(now // step) * step
    result = []
    for k in range(rows):
        end = last - (rows - 1 - k) * step
        n = SAMPLES_PER_BUCKET.get(timeframe, 1)
        samples = [end - step + step * (i + 1) / n for i in range(n)]
        result.append((end, samples))
    return result


def _aggregate(keys: tuple[str, ...], rows: list[tuple[float, ...]], cf: str) -> dict[str, float]:
    """One RRD row from samples given as tuples in `keys` order: MAX, or else AVERAGE."""
    columns = zip(*rows, strict=True)
    if cf == "MAX":
        return dict(zip(keys, map(max, columns), strict=True))
    n = len(rows)
    return {k: sum(column) / n for k, column in zip(keys, columns, strict=True)}


def _pressure(level: float, knee: float, slope: float) -> float:
    # (the shortcut is what round(min(100, max(0, ...)), 2) gives at or below the knee)
    if level <= knee:
        return 0.0
    return round(min(100.0, (level - knee) * slope), 2)


_NODE_KEYS = (
    "cpu", "loadavg", "memused", "pressurecpusome", "pressurememorysome",
    "pressurememoryfull", "netin", "netout",
)


def node_rrd(
    cluster: Cluster, name: str, now: float, timeframe: str, cf: str
) -> list[dict[str, Any]]:
    node = cluster.nodes[name]
    spec = node.spec
    result: list[dict[str, Any]] = []
    for end, samples in _buckets(now, timeframe):
        rows: list[tuple[float, ...]] = []
        for t in samples:
            if not node.online.at(t):
                continue
            demand, mem = cluster.node_load(name, t)
            rows.append((
                round(min(1.0, demand), 6),
                round(demand * spec.threads, 2),
                float(mem),
                _pressure(demand, 0.75, 200),
                _pressure(mem / spec.memory, 0.85, 300),
                _pressure(mem / spec.memory, 0.9, 300),
                40_000.0 + demand * 2_000_000,
                30_000.0 + demand * 1_500_000,
            ))
        entry: dict[str, Any] = {"time": end}
        if rows:
            agg = _aggregate(_NODE_KEYS, rows, cf)
            entry.update(agg)
            entry.update({
                "maxcpu": spec.threads,
                "iowait": round(0.002 + agg["cpu"] * 0.01, 6),
                "memtotal": spec.memory,
                "memavailable": spec.memory - agg["memused"],
                "swaptotal": spec.swap,
                "swapused": 0,
                "roottotal": spec.rootfs,
                "rootused": spec.rootfs_used,
                "arcsize": 0,
                "pressureiosome": 0.4,
                "pressureiofull": 0.2,
            })
        result.append(entry)
    return result


_GUEST_KEYS = (
    "cpu", "mem", "memhost", "netin", "netout", "diskread", "diskwrite",
    "pressurecpusome", "pressurecpufull", "pressurememorysome", "pressurememoryfull",
)


def guest_rrd(
    cluster: Cluster, vmid: int, now: float, timeframe: str, cf: str
) -> list[dict[str, Any]]:
    g = cluster.guests[vmid]
    spec = g.spec
    maxmem = spec.maxmem
    maxdisk = next((d.size for d in spec.disks if not d.cdrom), 0)
    rate = spec.net_rate
    nodes = cluster.nodes
    stopped = (0.0,) * len(_GUEST_KEYS)  # no cpu, memory, traffic or pressure
    fixed = {
        "maxcpu": cluster.guest_maxcpu(g),
        "maxmem": maxmem,
        "maxdisk": maxdisk,
        "disk": 0 if spec.type == "qemu" else int(maxdisk * 0.4),
        "pressureiosome": 0.0,
        "pressureiofull": 0.0,
    }
    result: list[dict[str, Any]] = []
    for end, samples in _buckets(now, timeframe):
        rows: list[tuple[float, ...]] = []
        for t in samples:
            node = g.node.at(t)
            if not nodes[node].online.at(t):
                continue
            if g.status.at(t) != "running":
                rows.append(stopped)
                continue
            # Running on an online node: what guest_cpu / guest_mem would answer.
            cpu = cluster._running_cpu(g, t)
            mem, memhost = cluster._running_mem(g, t)
            demand = cluster.node_load(node, t)[0]
            rows.append((
                round(cpu, 6), float(mem), float(memhost),
                rate, rate * 0.6, rate * 2.5, rate * 1.5,
                _pressure(demand, 0.9, 150), _pressure(demand, 1.0, 100),
                _pressure(mem / maxmem, 0.9, 300), _pressure(mem / maxmem, 0.95, 300),
            ))
        entry: dict[str, Any] = {"time": end}
        if rows:
            entry.update(_aggregate(_GUEST_KEYS, rows, cf))
            entry.update(fixed)
            if spec.type != "qemu":
                entry.pop("memhost", None)
        result.append(entry)
    return result
