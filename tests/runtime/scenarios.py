"""Small clusters for end-to-end runtime tests (simulator format, see pvesim/README.md)."""

from __future__ import annotations

import copy
from typing import Any

_BASE: dict[str, Any] = {
    "cluster": {"name": "rt"},
    "migration": {"seconds_per_gib": 1.0, "min_seconds": 2.0},
    "nodes": [
        {"name": "pve1", "threads": 16, "memory_gib": 64},
        {"name": "pve2", "threads": 16, "memory_gib": 64},
        {"name": "pve3", "threads": 16, "memory_gib": 64},
    ],
}


def cluster(guests: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    scenario = copy.deepcopy(_BASE)
    scenario["guests"] = guests
    scenario.update(copy.deepcopy(extra))
    return scenario


def vm(vmid: int, node: str, cpus: int, cpu: float, memory_gib: int, **extra: Any
       ) -> dict[str, Any]:
    return {"vmid": vmid, "name": f"vm{vmid}", "node": node, "cpus": cpus, "cpu": cpu,
            "memory_gib": memory_gib, "mem_gib": memory_gib / 2, **extra}


#: pve1 at ~88% CPU for good. Busiest is 200 (7.2 cores). Moving 201 (3.2 cores, 8 GiB) or
#: 202 (2.4 cores, 4 GiB) alone brings pve1 under 80%: the engine must pick 202 (less memory
#: to copy), to pve3 (the least loaded), and then stop.
CPU_HOT = cluster([
    vm(200, "pve1", 8, 0.9, 16),
    vm(201, "pve1", 4, 0.8, 8),
    vm(202, "pve1", 4, 0.6, 4),
    vm(203, "pve1", 2, 0.5, 2),
    vm(210, "pve2", 2, 0.5, 4),
    vm(220, "pve3", 2, 0.3, 4),
])

#: Every node comfortably below every threshold and near the mean: nothing to do, ever.
BALANCED = cluster([
    vm(300, "pve1", 4, 0.5, 16),
    vm(301, "pve2", 4, 0.5, 16),
    vm(302, "pve3", 4, 0.5, 16),
    vm(303, "pve1", 2, 0.4, 8),
    vm(304, "pve2", 2, 0.4, 8),
    vm(305, "pve3", 2, 0.4, 8),
])

#: Two problems at once: pve1 CPU-hot, pve2 at ~90% memory. Enough for several migrations,
#: so concurrency bugs would show as overlapping tasks in the simulator's log.
HOT_AND_FULL = cluster([
    vm(400, "pve1", 8, 0.9, 8),
    vm(401, "pve1", 4, 0.8, 4),
    vm(402, "pve1", 4, 0.6, 4),
    vm(403, "pve1", 2, 0.6, 2),
    vm(410, "pve2", 2, 0.2, 16, mem_gib=15),
    vm(411, "pve2", 2, 0.2, 16, mem_gib=15),
    vm(412, "pve2", 2, 0.2, 16, mem_gib=15),
    vm(413, "pve2", 2, 0.2, 8, mem_gib=8),
    vm(420, "pve3", 2, 0.2, 4),
])
