"""Hand-written PVE 9 payloads shaped like the real API (see the PVE API notes)."""

from __future__ import annotations

from typing import Any

GIB = 2**30


def node(name: str, *, status: str = "online", cpu: float = 0.25, maxcpu: int = 32,
         mem: int = 40 * GIB, maxmem: int = 128 * GIB, hastate: str | None = "online",
         ) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": f"node/{name}", "node": name, "type": "node",
                             "status": status, "level": ""}
    if status == "online":
        entry.update(cpu=cpu, maxcpu=maxcpu, mem=mem, maxmem=maxmem, disk=5 * GIB,
                     maxdisk=100 * GIB, uptime=12345, **{"cgroup-mode": 2})
    if hastate is not None:
        entry["hastate"] = hastate
    return entry


def vm(vmid: int, node_name: str, *, kind: str = "qemu", status: str = "running",
       cpu: float = 0.5, maxcpu: int = 4, mem: int = 3 * GIB, maxmem: int = 8 * GIB,
       memhost: int | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f"{kind}/{vmid}", "vmid": vmid, "node": node_name, "type": kind,
        "status": status, "name": f"guest{vmid}", "uptime": 100 if status == "running" else 0,
        "template": 0, "maxcpu": maxcpu, "cpu": cpu if status == "running" else 0,
        "maxmem": maxmem, "mem": mem if status == "running" else 0, "maxdisk": 32 * GIB,
        "disk": 0, "netin": 1, "netout": 2, "diskread": 3, "diskwrite": 4,
    }
    if kind == "qemu":
        entry["memhost"] = memhost if memhost is not None else entry["mem"]
    entry.update(extra)
    return entry


def status(name: str = "lab", nodes: dict[str, bool] | None = None,
           quorate: int = 1) -> list[dict[str, Any]]:
    nodes = nodes if nodes is not None else {"pve1": True, "pve2": True, "pve3": True}
    out: list[dict[str, Any]] = [{"type": "cluster", "id": "cluster", "name": name,
                                  "nodes": len(nodes), "version": 5, "quorate": quorate}]
    for i, (n, online) in enumerate(nodes.items(), start=1):
        out.append({"type": "node", "id": f"node/{n}", "name": n, "nodeid": i,
                    "local": int(i == 1), "online": int(online), "ip": f"10.0.0.{i}",
                    "level": ""})
    return out


def resources() -> list[dict[str, Any]]:
    """A three-node cluster with a VM, an HA VM, a container, a template, a locked VM."""
    return [
        {"id": "pool/prod", "type": "pool", "pool": "prod"},
        vm(100, "pve1", tags="prod;web", hastate="started", pool="prod", memhost=3_400_000_000),
        vm(101, "pve2", status="stopped", maxcpu=2, maxmem=4 * GIB, lock="backup"),
        vm(102, "pve1", cpu=1.7, maxcpu=2, tags="Mixed,Case  spaced"),
        vm(200, "pve2", kind="lxc", cpu=0.1, maxcpu=1, mem=GIB, maxmem=2 * GIB),
        vm(9000, "pve3", status="stopped", template=1),
        node("pve1", cpu=0.1523, maxcpu=32, mem=40802189312, maxmem=135089106944),
        node("pve2", cpu=0.4, maxcpu=16, mem=30 * GIB, maxmem=64 * GIB, hastate="maintenance"),
        node("pve3", cpu=0.05, maxcpu=16, mem=10 * GIB, maxmem=64 * GIB),
        {"id": "storage/pve1/local", "type": "storage", "storage": "local", "node": "pve1",
         "plugintype": "dir", "shared": 0, "status": "available", "disk": 1, "maxdisk": 2},
        {"id": "sdn/pve1/localnetwork", "type": "sdn", "sdn": "localnetwork", "node": "pve1"},
    ]


def rules() -> list[dict[str, Any]]:
    return [
        {"rule": "web-on-fast", "type": "node-affinity", "resources": "vm:100,vm:102",
         "nodes": "pve1:2,pve3,pve2:1", "strict": 1, "order": 1, "digest": "x"},
        {"rule": "db-apart", "type": "resource-affinity", "affinity": "negative",
         "resources": "vm:101,ct:200", "order": 2, "digest": "x"},
        {"rule": "off", "type": "node-affinity", "resources": "vm:101", "nodes": "pve2",
         "disable": 1, "order": 3, "digest": "x"},
        {"rule": "broken", "type": "resource-affinity", "affinity": "positive",
         "resources": "vm:100,vm:101", "order": 4, "digest": "x",
         "errors": {"resources": ["conflicts with rule 'db-apart'"]}},
        {"rule": "together", "type": "resource-affinity", "affinity": "positive",
         "resources": "vm:100,vm:102", "order": 5, "digest": "x"},
    ]


def options(crs: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"keyboard": "en-us"}
    if crs is not None:
        out["crs"] = crs
    return out
