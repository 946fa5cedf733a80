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


def _aggregate(rows: list[dict[str, float]], cf: str) -> dict[str, float]:
    keys = rows[0].keys()
    if cf == "MAX":
        return {k: max(r[k] for r in rows) for k in keys}
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _pressure(level: float, knee: float, slope: float) -> float:
    return round(min(100.0, max(0.0, (level - knee) * slope)), 2)


def node_rrd(
    cluster: Cluster, name: str, now: float, timeframe: str, cf: str
) -> list[dict[str, Any]]:
    node = cluster.nodes[name]
    spec = node.spec
    result: list[dict[str, Any]] = []
    for end, samples in _buckets(now, timeframe):
        rows = []
        for t in samples:
            if not node.online.at(t):
                continue
            demand, mem = cluster.node_load(name, t)
            cpu = min(1.0, demand)
            rows.append({
                "cpu": round(cpu, 6),
                "loadavg": round(demand * spec.threads, 2),
                "memused": float(mem),
                "pressurecpusome": _pressure(demand, 0.75, 200),
                "pressurememorysome": _pressure(mem / spec.memory, 0.85, 300),
                "pressurememoryfull": _pressure(mem / spec.memory, 0.9, 300),
                "netin": 40_000.0 + demand * 2_000_000,
                "netout": 30_000.0 + demand * 1_500_000,
            })
        entry: dict[str, Any] = {"time": end}
        if rows:
            agg = _aggregate(rows, cf)
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


def guest_rrd(
    cluster: Cluster, vmid: int, now: float, timeframe: str, cf: str
) -> list[dict[str, Any]]:
    g = cluster.guests[vmid]
    spec = g.spec
    maxdisk = next((d.size for d in spec.disks if not d.cdrom), 0)
    result: list[dict[str, Any]] = []
    for end, samples in _buckets(now, timeframe):
        rows = []
        for t in samples:
            node = g.node.at(t)
            if not cluster.node_online(node, t):
                continue
            running = cluster.guest_running(g, t)
            cpu = cluster.guest_cpu(g, t)
            mem, memhost = cluster.guest_mem(g, t)
            demand = cluster.node_load(node, t)[0] if running else 0.0
            rate = spec.net_rate if running else 0.0
            rows.append({
                "cpu": round(cpu, 6),
                "mem": float(mem),
                "memhost": float(memhost),
                "netin": rate,
                "netout": rate * 0.6,
                "diskread": rate * 2.5,
                "diskwrite": rate * 1.5,
                "pressurecpusome": _pressure(demand, 0.9, 150) if running else 0.0,
                "pressurecpufull": _pressure(demand, 1.0, 100) if running else 0.0,
                "pressurememorysome": _pressure(mem / spec.maxmem, 0.9, 300),
                "pressurememoryfull": _pressure(mem / spec.maxmem, 0.95, 300),
            })
        entry: dict[str, Any] = {"time": end}
        if rows:
            entry.update(_aggregate(rows, cf))
            entry.update({
                "maxcpu": spec.cpus,
                "maxmem": spec.maxmem,
                "maxdisk": maxdisk,
                "disk": 0 if spec.type == "qemu" else int(maxdisk * 0.4),
                "pressureiosome": 0.0,
                "pressureiofull": 0.0,
            })
            if spec.type != "qemu":
                entry.pop("memhost", None)
        result.append(entry)
    return result
