"""The PVE 9 endpoints the balancer (and ProxLB) read or call, rendered field-for-field.

Every handler runs under the simulator lock after `Cluster.sync()`, with `ctx.now` as the
instant it answers for. Field names, units and optional keys follow PVE 9 (see the reference
notes in the project), including its quirks: qemu lists say `cpus` not `maxcpu`, booleans are
0/1, `memory` in a VM config is a string, tags are `;`-joined.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from pvesim import rrd
from pvesim.cluster import Cluster, GuestState
from pvesim.errors import ApiError, internal, param_error
from pvesim.params import BOOL, INT, STR, Param, enum, required
from pvesim.routing import Ctx, Paged, route
from pvesim.scenario import HARuleSpec
from pvesim.tasks import Task, parse_upid, split_authid, task_user_may_see
from pvesim.tls import fingerprint
from pvesim.units import GIB, MIB, format_pve_size

KERNEL = "6.14.8-2-pve"
KVERSION = f"Linux {KERNEL} #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z) x86_64"
CLUSTER_TASKS_FINISHED_PER_NODE = 25


def _r(value: float) -> float:
    return round(value, 6)


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def _pveversion(c: Cluster) -> str:
    return f"pve-manager/{c.scenario.cluster.version}/{c.scenario.cluster.repoid}"


def _gtype_dir(g: GuestState) -> str:
    return "qemu" if g.type == "qemu" else "lxc"


def _maxdisk(g: GuestState) -> int:
    return next((d.size for d in g.spec.disks if not d.cdrom), 0)


def _guest_disk(g: GuestState) -> int:
    return 0 if g.type == "qemu" else int(_maxdisk(g) * 0.4)


# ----- cluster-wide ----------------------------------------------------------------------


@route("GET", "/version")
def version(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    spec = c.scenario.cluster
    return {"version": spec.version, "release": spec.release, "repoid": spec.repoid}


@route("GET", "/cluster/status")
def cluster_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    spec = c.scenario.cluster
    result: list[dict[str, Any]] = [{
        "type": "cluster", "id": "cluster", "name": spec.name, "nodes": len(c.nodes),
        "version": spec.config_version, "quorate": int(c.quorate),
    }]
    for node in c.nodes.values():
        result.append({
            "type": "node", "id": f"node/{node.name}", "name": node.name,
            "nodeid": node.spec.nodeid, "ip": node.spec.ip, "level": "",
            "local": int(node.name == c.entry_node), "online": int(node.online.current),
        })
    return result


def guest_resource(c: Cluster, g: GuestState, t: float) -> dict[str, Any]:
    """A `/cluster/resources` entry for a guest (reduced when its node is offline), as
    pve-manager `API2Tools::extract_vm_stats` builds it from the pvestatd row."""
    node = g.node.current
    entry: dict[str, Any] = {"id": f"{_gtype_dir(g)}/{g.vmid}", "vmid": g.vmid, "node": node,
                             "type": _gtype_dir(g)}
    sample = t if c.node_online(node) else c.stats_sample_time(node)
    if sample is not None:  # online, or its node's last broadcast has not expired yet
        m = c.guest_metrics(g, sample)
        entry.update({
            "status": g.status.at(sample), "name": g.spec.name, "uptime": m.uptime,
            "template": int(g.spec.template), "maxcpu": c.guest_maxcpu(g), "cpu": _r(m.cpu),
            "maxmem": g.spec.maxmem, "mem": m.mem, "maxdisk": _maxdisk(g),
            "disk": _guest_disk(g), "netin": m.netin, "netout": m.netout,
            "diskread": m.diskread, "diskwrite": m.diskwrite,
        })
        # PVE 9 sends memhost for both types; pvestatd's lxc row leaves it undef, so 0.
        entry["memhost"] = m.memhost if g.type == "qemu" else 0
    else:
        entry["status"] = "unknown"
    if g.spec.pool:
        entry["pool"] = g.spec.pool
    if g.lock:
        entry["lock"] = g.lock
    if g.spec.tags:
        entry["tags"] = ";".join(g.spec.tags)
    hastate = c.ha.guest_hastate(g)
    if hastate:
        entry["hastate"] = hastate
    return entry


def node_entry(
    c: Cluster, name: str, t: float, load: tuple[float, int] | None = None
) -> dict[str, Any]:
    """Node fields shared by /cluster/resources and /nodes (pve-manager API2Tools.pm
    `extract_node_stats`): an offline node keeps `level` and its sizes while its last stats
    are still in pmxcfs (5 minutes), then only `cgroup-mode` (from the kv store) remains."""
    node = c.nodes[name]
    entry: dict[str, Any] = {"id": f"node/{name}", "node": name, "type": "node"}
    if node.online.current:
        demand, mem = load if load is not None else c.node_load(name, t)
        entry.update({
            "status": "online", "cpu": _r(min(1.0, demand)), "maxcpu": node.spec.threads,
            "mem": mem, "maxmem": node.spec.memory, "disk": node.spec.rootfs_used,
            "maxdisk": node.spec.rootfs, "uptime": int(t - node.boot), "level": "",
            "cgroup-mode": 2,
        })
    elif c.stats_sample_time(name) is not None:
        entry.update({"status": "offline", "level": "", "maxcpu": node.spec.threads,
                      "maxmem": node.spec.memory, "maxdisk": node.spec.rootfs,
                      "cgroup-mode": 2})
    else:
        entry.update({"status": "offline", "cgroup-mode": 2})
    if c.ha.configured:
        entry["hastate"] = c.ha.node_state(name)
    return entry


def _storage_usage(c: Cluster) -> dict[tuple[str, str | None], int]:
    """Bytes allocated per (storage, node); shared storages under node None. One pass."""
    usage: dict[tuple[str, str | None], int] = {}
    for g in c.guests.values():
        for d in g.spec.disks:
            if d.storage is None or d.cdrom:
                continue
            key = (d.storage, None if c.storages[d.storage].shared else g.node.current)
            usage[key] = usage.get(key, 0) + d.size
    return usage


def _storage_used(
    c: Cluster, storage: str, node: str, usage: dict[tuple[str, str | None], int] | None = None
) -> int:
    usage = _storage_usage(c) if usage is None else usage
    return usage.get((storage, None if c.storages[storage].shared else node), 0)


def _storage_resources(c: Cluster) -> list[dict[str, Any]]:
    usage = _storage_usage(c)
    result = []
    for name in c.nodes:
        for s in c.storages.values():
            if not s.available_on(name):
                continue
            entry: dict[str, Any] = {
                "id": f"storage/{name}/{s.name}", "storage": s.name, "node": name,
                "type": "storage", "plugintype": s.type, "shared": int(s.shared),
                "content": s.content,
            }
            if c.node_online(name):
                entry.update({"status": "available", "disk": _storage_used(c, s.name, name, usage),
                              "maxdisk": s.size})
            else:
                entry["status"] = "unknown"
            result.append(entry)
    return result


@route("GET", "/cluster/resources", {"type": enum("vm", "storage", "node", "sdn")})
def cluster_resources(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    rtype = p.get("type")
    t = ctx.now
    result: list[dict[str, Any]] = []
    if rtype is None:
        for pool in sorted(c.scenario.pools):
            result.append({"id": f"/pool/{pool}", "pool": pool, "type": "pool"})
    if rtype in (None, "vm"):
        for g in sorted(c.guests.values(), key=lambda g: str(g.vmid)):
            result.append(guest_resource(c, g, t))
    if rtype in (None, "node"):
        loads = c.all_node_loads(t)
        for name in c.nodes:
            result.append(node_entry(c, name, t, loads[name]))
    if rtype in (None, "storage"):
        result.extend(_storage_resources(c))
    return result


def _broadcast_tasklist(c: Cluster, node: str, view: float) -> list[dict[str, Any]]:
    """A node's tasklist as pve-common RESTEnvironment.pm `active_workers` leaves it for
    the broadcast: running tasks (oldest first, no `pstart`), then the newest finished ones
    by starttime (no `pid`), 25 entries at most; token tasks get `user`/`tokenid` split."""
    tasks = [task for task in c.node_tasks[node] if task.started <= view]
    running = [task for task in tasks if task.endtime is None or task.endtime > view]
    finished = [task for task in tasks if task.endtime is not None and task.endtime <= view]
    finished.sort(key=lambda task: task.started, reverse=True)
    finished = finished[: max(0, CLUSTER_TASKS_FINISHED_PER_NODE - len(running))]
    result: list[dict[str, Any]] = []
    for task in running + finished:
        item: dict[str, Any] = {
            "upid": task.upid, "node": task.node, "starttime": task.starttime,
            "type": task.type, "id": task.id, **task.user_fields(),
        }
        if task in running:
            item.update({"saved": "0", "pid": task.pid})
        else:
            item.update({"saved": "1", "endtime": int(task.endtime or 0),
                         "status": task.exitstatus})
        result.append(item)
    return result


@route("GET", "/cluster/tasks")
def cluster_tasks(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """pve-manager Cluster.pm `tasks`: every node's list in node order. Without Sys.Audit
    on / only entries whose (split) `user` equals the caller's authid remain, so a token
    sees none, not even its own: PVE compares `balancer@pve` with `balancer@pve!balancer`."""
    view = ctx.now - c.cluster_tasks_lag
    result: list[dict[str, Any]] = []
    for name in c.nodes:
        for item in _broadcast_tasklist(c, name, view):
            if ctx.privileged or item["user"] == ctx.authid:
                result.append(item)
    return result


MAC_PREFIX = "BC:24:11"  # Proxmox's OUI, pve-cluster DataCenterConfig.pm $PROXMOX_OUI


@route("GET", "/cluster/options")
def cluster_options(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """pve-manager Cluster.pm `get_options`: the parsed datacenter.cfg (pve-cluster
    `parse_datacenter_config` always sets `description` and defaults `mac_prefix`) only with
    Sys.Audit on /, else just `console`/`tag-style`; `allowed-tags` is always added."""
    config: dict[str, Any] = {"description": "", **json.loads(json.dumps(c.options))}
    config.setdefault("mac_prefix", MAC_PREFIX)
    if ctx.privileged:
        result = config
    else:
        result = {k: config[k] for k in ("console", "tag-style") if k in config}
    result["allowed-tags"] = _allowed_tags(c)
    return result


def _allowed_tags(c: Cluster) -> list[str]:
    """pve-guest-common GuestHelpers.pm `get_allowed_tags` with the default `user-allow=free`
    and no registered tags: every tag of the guests the caller may audit (all of them here),
    sorted."""
    return sorted({tag for g in c.guests.values() for tag in g.spec.tags})


# ----- HA --------------------------------------------------------------------------------


def _rule_entry(c: Cluster, rule: HARuleSpec) -> dict[str, Any]:
    """A rule as pve-ha-manager API2/HA/Rules.pm `$get_api_ha_rule` returns it: `digest` of
    the whole rules.cfg, and `errors` only when the feasibility checks flag the rule."""
    entry: dict[str, Any] = {"rule": rule.rule, "type": rule.type,
                             "resources": ",".join(rule.resources), "order": rule.order}
    if rule.type == "node-affinity":
        entry["nodes"] = ",".join(f"{n}:{prio}" if prio else n for n, prio in rule.nodes)
        if rule.strict:
            entry["strict"] = 1
    else:
        entry["affinity"] = rule.affinity
    if rule.disable:
        entry["disable"] = 1
    if rule.comment:
        entry["comment"] = rule.comment
    entry["digest"] = _digest([r.rule for r in c.ha.rules])
    errors = c.ha.rule_errors.get(rule.rule)
    if errors:
        entry["errors"] = {"resources": list(errors)}
    return entry


@route("GET", "/cluster/ha/rules",
       {"type": enum("node-affinity", "resource-affinity"), "resource": STR}, sys_audit=True)
def ha_rules(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    result = []
    for rule in c.ha.rules:
        if p.get("type") and rule.type != p["type"]:
            continue
        if p.get("resource") and p["resource"] not in rule.resources:
            continue
        result.append(_rule_entry(c, rule))
    return result


@route("GET", "/cluster/ha/rules/{rule}", sys_audit=True)
def ha_rule(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    for rule in c.ha.rules:
        if rule.rule == p["rule"]:
            return _rule_entry(c, rule)
    raise internal(f"no such ha rule '{p['rule']}'")


@route("GET", "/cluster/ha/groups", sys_audit=True)
def ha_groups(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    raise internal("cannot index groups: ha groups have been migrated to rules")


def _ha_resource(c: Cluster, sid: str) -> dict[str, Any]:
    svc = c.ha.services[sid]
    entry: dict[str, Any] = {"sid": sid, "type": svc.type, "state": svc.state,
                             "digest": _digest(sorted(c.ha.services))}
    if not svc.failback:
        entry["failback"] = 0
    if svc.max_restart is not None:
        entry["max_restart"] = svc.max_restart
    if svc.max_relocate is not None:
        entry["max_relocate"] = svc.max_relocate
    if svc.comment:
        entry["comment"] = svc.comment
    return entry


@route("GET", "/cluster/ha/resources", {"type": enum("ct", "vm")}, sys_audit=True)
def ha_resources(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return [_ha_resource(c, sid) for sid, svc in c.ha.services.items()
            if not p.get("type") or svc.type == p["type"]]


def _sid_param(c: Cluster, raw: str) -> str:
    sid = f"vm:{raw}" if raw.isdigit() else raw
    if sid not in c.ha.services:
        raise internal(f"no such resource '{sid}'")
    return sid


@route("GET", "/cluster/ha/resources/{sid}", sys_audit=True)
def ha_resource(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return _ha_resource(c, _sid_param(c, p["sid"]))


@route("POST", "/cluster/ha/resources/{sid}/migrate", {"node": required(Param("node"))},
       sys_audit=True)
def ha_resource_migrate(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    c.check_quorum()
    return c.ha.api_migrate(_sid_param(c, p["sid"]), p["node"])


def _lrm_mode(c: Cluster, name: str) -> str:
    node = c.nodes[name]
    if node.hastate == "maintenance":
        return "maintenance mode"
    if not node.online.current:
        return "old timestamp - dead?"
    has_services = any(c.guests[s.vmid].node.current == name for s in c.ha.services.values())
    return "active" if has_services else "idle"


@route("GET", "/cluster/ha/status/current", sys_audit=True)
def ha_status_current(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    t = int(ctx.now)
    master = c.ha.master_node()
    local = c.entry_node
    quorum: dict[str, Any] = {"id": "quorum", "type": "quorum", "node": local,
                              "quorate": int(c.quorate)}
    quorum["status"] = "OK" if c.quorate else f"No quorum on node '{local}'!"
    result: list[dict[str, Any]] = [quorum]
    if not c.ha.configured:
        return result
    crs = c.options.get("crs")
    ha_crs = crs.get("ha") if isinstance(crs, dict) else None
    extra = f" - {ha_crs} load CRS" if ha_crs and ha_crs != "basic" else ""
    result.append({"id": "master", "type": "master", "node": master, "timestamp": t,
                   "status": f"{master} (active, {_ctime(t)}){extra}"})
    for name in c.nodes:
        stamp = t if c.node_online(name) else int(c.nodes[name].offline_since or t)
        result.append({"id": f"lrm:{name}", "type": "lrm", "node": name, "timestamp": stamp,
                       "status": f"{name} ({_lrm_mode(c, name)}, {_ctime(stamp)})"})
    # Those in service_status first, then configured ones it lacks (ignored), each sorted.
    listed = sorted(sid for sid, svc in c.ha.services.items() if c.ha.ss_state(svc))
    unlisted = sorted(sid for sid in c.ha.services if sid not in listed)
    result.extend(_ha_service_entry(c, sid) for sid in listed + unlisted)
    return result


def _ha_service_entry(c: Cluster, sid: str) -> dict[str, Any]:
    """A service line of pve-ha-manager API2/HA/Status.pm `status`: `crm_state` only when
    service_status has the service, `state` the verbose one (Tools.pm)."""
    svc = c.ha.services[sid]
    node = c.guests[svc.vmid].node.current
    state = c.ha.verbose_state(svc)
    entry: dict[str, Any] = {"id": f"service:{sid}", "type": "service", "sid": sid, "node": node}
    crm_state = c.ha.ss_state(svc)
    if crm_state is not None:
        entry["crm_state"] = crm_state
    entry.update({"state": state, "request_state": svc.state,
                  "status": f"{sid} ({node}, {state})"})
    if not svc.failback:
        entry["failback"] = 0
    for key in ("max_restart", "max_relocate", "comment"):
        value = getattr(svc, key)
        if value is not None:
            entry[key] = value
    return entry


@route("GET", "/cluster/ha/status/manager_status", sys_audit=True)
def ha_manager_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    t = int(ctx.now)
    master = c.ha.master_node()
    quorum = {"node": c.entry_node, "quorate": int(c.quorate)}
    if not c.ha.configured:
        # Status.pm `manager_status` adds lrm_status only inside its loop over node_status.
        return {"manager_status": {}, "quorum": quorum}
    services: dict[str, Any] = {}
    for sid in sorted(c.ha.services):
        svc = c.ha.services[sid]
        state = c.ha.ss_state(svc)
        if state is None:
            continue  # ignored: Manager.pm drops it from service_status
        g = c.guests[svc.vmid]
        entry: dict[str, Any] = {"node": g.node.current, "state": state, "uid": svc.uid}
        if state == "started" and g.status.current == "running":
            entry["running"] = 1
        if svc.target:
            entry["target"] = svc.target
        if svc.maintenance_node:
            entry["maintenance_node"] = svc.maintenance_node
        services[sid] = entry
    node_status = {name: c.ha.node_state(name) for name in c.nodes}
    node_request = {name: {"maintenance": 1} for name, n in c.nodes.items()
                    if n.hastate == "maintenance"}
    lrm_status: dict[str, Any] = {}
    for name, node in c.nodes.items():
        maintenance = node.hastate == "maintenance"
        lrm_status[name] = {
            "mode": "maintenance" if maintenance else "active",
            "state": "maintenance" if maintenance else (
                "active" if _lrm_mode(c, name) == "active" else "wait_for_agent_lock"),
            "results": {},
            "timestamp": t if node.online.current else int(node.offline_since or t),
        }
    return {
        "manager_status": {"master_node": master, "timestamp": t, "node_status": node_status,
                           "node_request": node_request, "service_status": services},
        "quorum": quorum,
        "lrm_status": lrm_status,
    }


# ----- nodes -----------------------------------------------------------------------------


@route("GET", "/nodes")
def nodes_list(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    fp = fingerprint()
    result = []
    for name in c.nodes:
        entry = node_entry(c, name, ctx.now)
        entry.pop("cgroup-mode", None)
        entry.pop("hastate", None)
        entry["ssl_fingerprint"] = fp
        result.append(entry)
    return result


@route("GET", "/nodes/{node}/status", proxy=True)
def node_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    node = c.nodes[p["node"]]
    spec = node.spec
    demand, mem = c.node_load(node.name, ctx.now)
    load = demand * spec.threads
    swap_used = 0
    return {
        "cpu": _r(min(1.0, demand)),
        "wait": _r(0.002 + min(1.0, demand) * 0.01),
        "loadavg": [f"{load:.2f}", f"{load * 0.97:.2f}", f"{load * 0.93:.2f}"],
        "cpuinfo": {
            "model": spec.cpu_model, "sockets": spec.sockets,
            "cores": max(1, spec.cores // spec.sockets), "cpus": spec.threads,
            "mhz": f"{spec.mhz:.3f}", "user_hz": 100, "hvm": "1",
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 "
                     "clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm "
                     "constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq svm",
        },
        "memory": {"total": spec.memory, "used": mem, "free": spec.memory - mem,
                   "available": spec.memory - mem},
        "swap": {"total": spec.swap, "used": swap_used, "free": spec.swap - swap_used},
        "ksm": {"shared": 0},
        "rootfs": {"total": spec.rootfs, "used": spec.rootfs_used,
                   "avail": spec.rootfs - spec.rootfs_used, "free": spec.rootfs - spec.rootfs_used},
        "uptime": int(ctx.now - node.boot),
        "idle": 0,
        "kversion": KVERSION,
        "current-kernel": {"sysname": "Linux", "release": KERNEL, "machine": "x86_64",
                           "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "pveversion": _pveversion(c),
    }


@route("GET", "/nodes/{node}/version", proxy=True)
def node_version(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return version(c, ctx, p)


_RRD_SCHEMA = {
    "timeframe": enum(*rrd.TIMEFRAMES, optional=False),
    "cf": enum("AVERAGE", "MAX"),
}


@route("GET", "/nodes/{node}/rrddata", _RRD_SCHEMA)
def node_rrddata(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return rrd.node_rrd(c, p["node"], ctx.now, p["timeframe"], p.get("cf", "AVERAGE"))


def _pressure_fields(
    c: Cluster, g: GuestState, t: float, demand: float | None = None
) -> dict[str, float]:
    if demand is None:
        demand = c.node_load(g.node.current, t)[0]
    some = round(min(100.0, max(0.0, (demand - 0.9) * 150)), 2)
    return {"pressurecpusome": some, "pressurecpufull": round(some / 2, 2),
            "pressureiosome": 0.0, "pressureiofull": 0.0,
            "pressurememorysome": 0.0, "pressurememoryfull": 0.0}


def _guest_list_entry(
    c: Cluster, g: GuestState, t: float, demand: float | None = None
) -> dict[str, Any]:
    """One guest of a node's qemu/lxc list; `demand` is its node's cpu demand at `t`, when
    the caller already has it (a list would otherwise sum the node's load once per guest)."""
    m = c.guest_metrics(g, t)
    running = g.status.current == "running"
    entry: dict[str, Any] = {
        "vmid": g.vmid, "name": g.spec.name, "status": g.status.current,
        "cpus": c.guest_maxcpu(g), "cpu": _r(m.cpu), "maxmem": g.spec.maxmem, "mem": m.mem,
        "maxdisk": _maxdisk(g), "disk": _guest_disk(g), "netin": m.netin, "netout": m.netout,
        "diskread": m.diskread, "diskwrite": m.diskwrite, "uptime": m.uptime,
    }
    if g.type == "qemu":
        entry["memhost"] = m.memhost
    else:
        entry.update({"type": "lxc", "maxswap": g.spec.swap, "swap": 0})
    if running:
        entry["pid"] = g.pid
        entry.update(_pressure_fields(c, g, t, demand))
    if g.spec.template:
        entry["template"] = 1
    if g.lock:
        entry["lock"] = g.lock
    if g.spec.tags:
        entry["tags"] = ";".join(g.spec.tags)
    return entry


def _guest_list(c: Cluster, node: str, t: float, gtype: str) -> list[dict[str, Any]]:
    guests = [g for g in c.guests_on(node) if g.type == gtype]
    demand = c.node_load(node, t)[0] if guests else None
    return [_guest_list_entry(c, g, t, demand) for g in guests]


@route("GET", "/nodes/{node}/qemu", {"full": BOOL}, proxy=True)
def qemu_list(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return _guest_list(c, p["node"], ctx.now, "qemu")


@route("GET", "/nodes/{node}/lxc", proxy=True)
def lxc_list(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return _guest_list(c, p["node"], ctx.now, "lxc")


@route("GET", "/nodes/{node}/qemu/{vmid}/status/current", proxy=True)
def qemu_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    g = c.load_guest(p["node"], p["vmid"], "qemu")
    entry = _guest_list_entry(c, g, ctx.now)
    running = g.status.current == "running"
    entry.update({"qmpstatus": g.status.current, "ha": c.ha.service_status(g), "agent": 1})
    if running:
        entry.update({"running-machine": "pc-i440fx-10.0+pve0", "running-qemu": "10.0.2",
                      "balloon": g.spec.maxmem,
                      "freemem": max(0, g.spec.maxmem - entry["mem"])})
    return entry


@route("GET", "/nodes/{node}/lxc/{vmid}/status/current", proxy=True)
def lxc_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    g = c.load_guest(p["node"], p["vmid"], "lxc")
    entry = _guest_list_entry(c, g, ctx.now)
    entry["ha"] = c.ha.service_status(g)
    return entry


def _mac(vmid: int, index: int = 0) -> str:
    return f"BC:24:11:{(vmid >> 8) & 0xFF:02X}:{vmid & 0xFF:02X}:{index:02X}"


def qemu_config(c: Cluster, g: GuestState) -> dict[str, Any]:
    spec = g.spec
    cfg: dict[str, Any] = {
        "name": spec.name, "memory": str(spec.maxmem // MIB), "cores": spec.cores,
        "sockets": spec.sockets, "cpu": "x86-64-v2-AES", "numa": 0, "ostype": "l26",
        "scsihw": "virtio-scsi-single", "agent": "1",
        "net0": f"virtio={_mac(spec.vmid)},bridge=vmbr0",
        "smbios1": f"uuid=00000000-0000-4000-8000-{spec.vmid:012d}",
        "vmgenid": f"00000000-0000-4000-9000-{spec.vmid:012d}",
        "meta": "creation-qemu=10.0.2,ctime=1735689600",
    }
    if spec.vcpus:
        cfg["vcpus"] = spec.vcpus
    boot = []
    for disk in spec.disks:
        if disk.cdrom:
            cfg[disk.key] = f"{disk.volid},media=cdrom" + (f",size={format_pve_size(disk.size)}"
                                                           if disk.size else "")
        else:
            cfg[disk.key] = f"{disk.volid},iothread=1,size={format_pve_size(disk.size)}"
        boot.append(disk.key)
    cfg["boot"] = "order=" + ";".join([*boot, "net0"])
    for i, dev in enumerate(spec.hostpci):
        cfg[f"hostpci{i}"] = dev
    for i, dev in enumerate(spec.usb):
        cfg[f"usb{i}"] = dev
    return _with_common_keys(cfg, g)


def _with_common_keys(cfg: dict[str, Any], g: GuestState) -> dict[str, Any]:
    """Keys qemu and lxc configs share (tags, lock, template) and the digest over it all."""
    if g.spec.tags:
        cfg["tags"] = ";".join(g.spec.tags)
    if g.lock:
        cfg["lock"] = g.lock
    if g.spec.template:
        cfg["template"] = 1
    cfg["digest"] = _digest(cfg)
    return cfg


def lxc_config(c: Cluster, g: GuestState) -> dict[str, Any]:
    spec = g.spec
    cfg: dict[str, Any] = {
        "arch": "amd64", "hostname": spec.name,
        "memory": spec.maxmem // MIB, "swap": spec.swap // MIB, "ostype": "debian",
        "unprivileged": 1, "features": "nesting=1",
        "net0": f"name=eth0,bridge=vmbr0,hwaddr={_mac(spec.vmid)},ip=dhcp,type=veth",
    }
    if spec.cores:
        cfg["cores"] = spec.cores
    if spec.cpulimit:
        cfg["cpulimit"] = spec.cpulimit
    for disk in spec.disks:
        if not disk.cdrom:
            mount = "" if disk.key == "rootfs" else f",mp=/mnt/{disk.key}"
            cfg[disk.key] = f"{disk.volid}{mount},size={format_pve_size(disk.size)}"
    return _with_common_keys(cfg, g)


@route("GET", "/nodes/{node}/qemu/{vmid}/config", {"current": BOOL, "snapshot": STR}, proxy=True)
def qemu_config_get(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    g = c.load_guest(p["node"], p["vmid"], "qemu")
    if p.get("snapshot"):
        raise internal(f"snapshot '{p['snapshot']}' does not exist")
    return qemu_config(c, g)


@route("GET", "/nodes/{node}/lxc/{vmid}/config", {"current": BOOL, "snapshot": STR}, proxy=True)
def lxc_config_get(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    g = c.load_guest(p["node"], p["vmid"], "lxc")
    if p.get("snapshot"):
        raise internal(f"snapshot '{p['snapshot']}' does not exist")
    return lxc_config(c, g)


def _guest_rrd(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    vmid = p["vmid"]
    if vmid not in c.guests:
        raise internal(
            f"RRD error: opening '/var/lib/rrdcached/db/pve-vm-9.0/{vmid}': "
            "No such file or directory"
        )
    return rrd.guest_rrd(c, vmid, ctx.now, p["timeframe"], p.get("cf", "AVERAGE"))


# RRD data is cluster-replicated and keyed by vmid only: PVE answers for any node/type.
route("GET", "/nodes/{node}/qemu/{vmid}/rrddata", _RRD_SCHEMA)(_guest_rrd)
route("GET", "/nodes/{node}/lxc/{vmid}/rrddata", _RRD_SCHEMA)(_guest_rrd)


# ----- migration -------------------------------------------------------------------------


def _blocking_ha(c: Cluster, g: GuestState, node: str) -> list[dict[str, str]]:
    """`blocking-ha-resources` for one node (pve-ha-manager Config.pm
    `get_resource_motion_info`): only for HA-managed guests and HA-online nodes."""
    svc = c.ha.service_of(g)
    if svc is None or not c.ha.manages(g) or c.ha.node_state(node) != "online":
        return []
    return [{"sid": b, "cause": "resource-affinity"} for b in c.ha.negative_blockers(svc.sid, node)]


def _local_disk(key: str, volid: str, size: int, cdrom: bool) -> dict[str, Any]:
    """One `local_disks` entry: the attributes qemu-server `foreach_volid` collects
    (`replicate` 1 unless the drive says replicate=0; `size` only with a size= option)."""
    entry: dict[str, Any] = {
        "volid": volid, "cdrom": int(cdrom), "is_cloudinit": 0, "replicate": 1, "shared": 0,
        "is_unused": 0, "is_attached": 1, "is_vmstate": 0, "is_tpmstate": 0, "drivename": key,
    }
    if size:
        entry["size"] = size
    return entry


def _precondition(c: Cluster, p: dict[str, Any]) -> dict[str, Any]:
    """qemu-server `migrate_vm_precondition`: `target` is accepted and never read; every
    other cluster node gets a key in `not_allowed_nodes`, `{}` when nothing blocks it, and
    exactly the nodes with an empty entry are listed in `allowed_nodes`."""
    c.check_quorum()
    g = c.load_guest(p["node"], p["vmid"], "qemu")
    if g.lock:
        raise internal(f"VM is locked ({g.lock})")
    running = g.status.current == "running"
    allowed: list[str] = []
    not_allowed: dict[str, Any] = {}
    for name in c.nodes:
        if name == p["node"]:
            continue
        reasons: dict[str, Any] = {}
        stores = c.unavailable_storages(g, name)
        if stores:
            reasons["unavailable_storages"] = stores
        blockers = _blocking_ha(c, g, name)
        if blockers:
            reasons["blocking-ha-resources"] = blockers
        not_allowed[name] = reasons
        if not reasons:
            allowed.append(name)
    local, mapped = c.local_resources(g, running)
    result: dict[str, Any] = {
        "running": int(running), "allowed_nodes": allowed, "not_allowed_nodes": not_allowed,
        "local_disks": [_local_disk(*v) for v in c.local_volumes(g)],
        "local_resources": local, "mapped-resources": sorted(mapped),
        "mapped-resource-info": mapped, "has-dbus-vmstate": 1,
    }
    if c.ha.manages(g):
        result["dependent-ha-resources"] = c.ha.dependents(g.spec.sid)
    return result


def _lxc_precondition(c: Cluster, p: dict[str, Any]) -> dict[str, Any]:
    """pve-container API2/LXC.pm `migrate_vm_precondition`: dashed keys, no storage or
    device info, and only the nodes an HA rule blocks in `not-allowed-nodes`."""
    c.check_quorum()
    g = c.load_guest(p["node"], p["vmid"], "lxc")
    if g.lock:
        raise internal(f"CT is locked ({g.lock})")
    allowed: list[str] = []
    not_allowed: dict[str, Any] = {}
    for name in c.nodes:
        if name == p["node"]:
            continue
        blockers = _blocking_ha(c, g, name)
        if blockers:
            not_allowed[name] = {"blocking-ha-resources": blockers}
        else:
            allowed.append(name)
    result: dict[str, Any] = {"running": int(g.status.current == "running"),
                              "allowed-nodes": allowed, "not-allowed-nodes": not_allowed}
    if c.ha.manages(g):
        result["dependent-ha-resources"] = c.ha.dependents(g.spec.sid)
    return result


@route("GET", "/nodes/{node}/qemu/{vmid}/migrate", {"target": Param("node")}, proxy=True)
def qemu_migrate_check(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return _precondition(c, p)


@route("GET", "/nodes/{node}/lxc/{vmid}/migrate", {"target": Param("node")}, proxy=True)
def lxc_migrate_check(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return _lxc_precondition(c, p)


_QEMU_MIGRATE = {
    "target": required(Param("node")),
    "online": BOOL,
    "with-local-disks": BOOL,
    "targetstorage": STR,
    "bwlimit": Param("integer", minimum=0),
    "force": BOOL,
    "migration_type": enum("secure", "insecure"),
    "migration_network": STR,
    "with-conntrack-state": BOOL,
}


@route("POST", "/nodes/{node}/qemu/{vmid}/migrate", _QEMU_MIGRATE, proxy=True)
def qemu_migrate(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    return c.request_migrate(p["node"], p["vmid"], "qemu", p, ctx.authid)


_LXC_MIGRATE = {
    "target": required(Param("node")),
    "online": BOOL,
    "restart": BOOL,
    "timeout": INT,
    "bwlimit": Param("number", minimum=0),
    "target-storage": STR,
}


@route("POST", "/nodes/{node}/lxc/{vmid}/migrate", _LXC_MIGRATE, proxy=True)
def lxc_migrate(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    if "bwlimit" in p:
        p = {**p, "bwlimit": int(p["bwlimit"])}
    return c.request_migrate(p["node"], p["vmid"], "lxc", p, ctx.authid)


# ----- tasks -----------------------------------------------------------------------------

_TASKS_SCHEMA = {
    "start": Param("integer", minimum=0),
    "limit": Param("integer", minimum=0),
    "userfilter": STR,
    "typefilter": STR,
    "vmid": Param("integer", minimum=100, maximum=999_999_999),
    "errors": BOOL,
    "source": enum("archive", "active", "all"),
    "since": INT,
    "until": INT,
    "statusfilter": STR,
}


def _status_filter(p: dict[str, Any]) -> set[str]:
    """Tasks.pm `node_tasks`: `errors` only switches `ok` off and makes `statusfilter`
    ignored; a given `statusfilter` (even empty) lists exactly its classes."""
    if p.get("errors"):
        return {"warning", "error", "unknown"}
    if "statusfilter" in p:
        return {s.lower() for s in re.split(r"[,;\s]+", str(p["statusfilter"])) if s}
    return {"ok", "warning", "error", "unknown"}


def _task_items(c: Cluster, node: str, source: str) -> list[tuple[dict[str, Any], Task]]:
    """Tasks.pm `node_tasks` sources: the `active` file's unsaved (running) tasks, oldest
    first and not token-converted (`user` is the full authid, `saved` "0", status RUNNING);
    then the archive index read backwards (newest archived first), decoded and converted.
    Finished tasks are archived when the worker exits, so none stays in `active`."""
    tasks = c.node_tasks[node]
    items: list[tuple[dict[str, Any], Task]] = []
    if source in ("active", "all"):
        for task in tasks:
            if task.endtime is None:
                items.append(({**task.decoded(), "saved": "0", "status": "RUNNING"}, task))
    if source != "active":
        done = [task for task in tasks if task.endtime is not None]
        done.sort(key=lambda task: (task.endtime or 0, task.started), reverse=True)
        for task in done:
            item = {**task.decoded(), **task.user_fields(), "endtime": int(task.endtime or 0),
                    "status": task.exitstatus}
            items.append((item, task))
    return items


def _task_listed(
    item: dict[str, Any], task: Task, p: dict[str, Any], statuses: set[str], ctx: Ctx
) -> bool:
    """Tasks.pm `$filter_task`, before `start`/`limit`; `userfilter` is a case-insensitive
    substring of the entry's `user` (the full authid for active entries, else split)."""
    userfilter = p.get("userfilter")
    if userfilter and userfilter.lower() not in item["user"].lower():
        return False
    if not ctx.privileged and not task_user_may_see(item["user"], item.get("tokenid"),
                                                    ctx.authid):
        return False
    if p.get("typefilter") and item["type"] != p["typefilter"]:
        return False
    if p.get("vmid") and item["id"] != str(p["vmid"]):
        return False
    if "since" in p and item["starttime"] < p["since"]:
        return False
    if "until" in p and item["starttime"] > p["until"]:
        return False
    return task.status_class() in statuses


@route("GET", "/nodes/{node}/tasks", _TASKS_SCHEMA, proxy=True)
def node_tasks(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """Tasks.pm `node_tasks`: `total` counts every match; `limit=0` lists none of them."""
    statuses = _status_filter(p)
    start, limit = p.get("start", 0), p.get("limit", 50)
    count = 0
    page: list[dict[str, Any]] = []
    for item, task in _task_items(c, p["node"], p.get("source", "archive")):
        if not _task_listed(item, task, p, statuses, ctx):
            continue
        count += 1
        if count > start and len(page) < limit:
            page.append(item)
    return Paged(page, count)


def _check_task_user(task_upid: dict[str, str | int], node: str, ctx: Ctx) -> None:
    """Tasks.pm `read_task_status`/`read_task_log`: not the task's owner (after the token
    split) and no Sys.Audit on /nodes/<node> is a 403, PVE's permission check failure."""
    user, tokenid = split_authid(str(task_upid["user"]))
    if not ctx.privileged and not task_user_may_see(user, tokenid, ctx.authid):
        raise ApiError(403, f"Permission check failed (/nodes/{node}, Sys.Audit)")


def _parsed_upid(p: dict[str, Any]) -> dict[str, str | int]:
    parsed = parse_upid(p["upid"])
    if parsed is None:
        raise param_error({"upid": "unable to parse worker upid"})
    return parsed


def _task_here(c: Cluster, p: dict[str, Any]) -> Task | None:
    """The task whose log file is on the node asked (PVE proxies to it and looks there)."""
    task = c.tasks.get(p["upid"])
    return task if task is not None and task.node == p["node"] else None


@route("GET", "/nodes/{node}/tasks/{upid}/status", proxy=True)
def task_status(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """Tasks.pm `read_task_status`: 'no such task' (400) before the owner check (403)."""
    parsed = _parsed_upid(p)
    task = _task_here(c, p)
    if task is None:
        raise param_error({"upid": "no such task"})
    _check_task_user(parsed, p["node"], ctx)
    result: dict[str, Any] = {
        "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
        "starttime": task.starttime, "type": task.type, "id": task.id, **task.user_fields(),
        "status": "running" if task.endtime is None else "stopped",
    }
    if task.exitstatus is not None:
        result["exitstatus"] = task.exitstatus
    return result


@route("GET", "/nodes/{node}/tasks/{upid}/log",
       {"start": Param("integer", minimum=0), "limit": Param("integer", minimum=0),
        "download": BOOL}, proxy=True)
def task_log(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """Tasks.pm `read_task_log`: owner check first; a missing log file is not an error but
    pve-common Tools.pm `dump_logfile`'s one line."""
    parsed = _parsed_upid(p)
    _check_task_user(parsed, p["node"], ctx)
    task = _task_here(c, p)
    if task is None:
        return Paged([{"n": 1, "t": "unable to open file - No such file or directory"}], 1)
    lines = task.log_lines(ctx.now)
    start = p.get("start", 0)
    limit = p.get("limit", 50)
    chosen = lines[start:] if limit == 0 else lines[start : start + limit]
    return Paged([{"n": start + i + 1, "t": line} for i, line in enumerate(chosen)], len(lines))


# ----- storage, pools, access ------------------------------------------------------------


@route("GET", "/storage", {"type": STR})
def storage_config(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    result = []
    for s in c.storages.values():
        if p.get("type") and s.type != p["type"]:
            continue
        entry: dict[str, Any] = {"storage": s.name, "type": s.type, "content": s.content,
                                 "digest": _digest(s.name)}
        if s.shared:
            entry["shared"] = 1
        if s.nodes is not None:
            entry["nodes"] = ",".join(s.nodes)
        result.append(entry)
    return result


@route("GET", "/nodes/{node}/storage",
       {"content": STR, "storage": STR, "enabled": BOOL, "format": BOOL, "target": STR},
       proxy=True)
def node_storage(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    node = p["node"]
    result = []
    for s in c.storages.values():
        if not s.available_on(node) or (p.get("storage") and s.name != p["storage"]):
            continue
        if p.get("content") and p["content"] not in s.content.split(","):
            continue
        used = _storage_used(c, s.name, node)
        result.append({
            "storage": s.name, "type": s.type, "content": s.content, "shared": int(s.shared),
            "active": 1, "enabled": 1, "total": s.size, "used": used, "avail": s.size - used,
            "used_fraction": _r(used / s.size if s.size else 0.0),
        })
    return result


@route("GET", "/nodes/{node}/storage/{storage}/content", {"content": STR, "vmid": INT}, proxy=True)
def storage_content(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    node, name = p["node"], p["storage"]
    s = c.storages.get(name)
    if s is None:
        raise internal(f"storage '{name}' does not exist")
    if not s.available_on(node):
        raise internal(f"storage '{name}' is not available on node '{node}'")
    result = []
    for g in c.guests.values():
        if not s.shared and g.node.current != node:
            continue
        if "vmid" in p and g.vmid != p["vmid"]:
            continue
        content = "images" if g.type == "qemu" else "rootdir"
        if p.get("content") and p["content"] != content:
            continue
        for disk in g.spec.disks:
            if disk.storage == name and not disk.cdrom:
                result.append({"volid": disk.volid, "vmid": g.vmid, "size": disk.size,
                               "used": disk.size // 2, "format": "raw", "content": content,
                               "ctime": 1735689600})
    return result


@route("GET", "/pools", {"poolid": STR, "type": enum("qemu", "lxc", "storage")})
def pools(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    result = []
    for poolid, comment in sorted(c.scenario.pools.items()):
        if p.get("poolid") and poolid != p["poolid"]:
            continue
        entry: dict[str, Any] = {"poolid": poolid}
        if comment:
            entry["comment"] = comment
        if p.get("poolid"):
            entry["members"] = _pool_members(c, ctx, poolid, p.get("type"))
        result.append(entry)
    return result


def _pool_members(c: Cluster, ctx: Ctx, poolid: str, mtype: str | None) -> list[dict[str, Any]]:
    return [guest_resource(c, g, ctx.now) for g in sorted(c.guests.values(), key=lambda g: g.vmid)
            if g.spec.pool == poolid and (mtype is None or g.type == mtype)]


@route("GET", "/pools/{poolid}", {"type": enum("qemu", "lxc", "storage")})
def pool(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    poolid = p["poolid"]
    if poolid not in c.scenario.pools:
        raise internal(f"pool '{poolid}' does not exist")
    result: dict[str, Any] = {"members": _pool_members(c, ctx, poolid, p.get("type"))}
    if c.scenario.pools[poolid]:
        result["comment"] = c.scenario.pools[poolid]
    return result


#: pve-access-control AccessControl.pm: the built-in PVEAuditor role (PVE 9: no VM.Monitor).
PVE_AUDITOR: tuple[str, ...] = (
    "VM.Audit", "VM.GuestAgent.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit",
    "Pool.Audit", "Mapping.Audit",
)
#: The custom role the simulated token holds on /vms.
BALANCER_ROLE: tuple[str, ...] = ("VM.Audit", "VM.Migrate")
#: RPCEnvironment.pm `get_effective_permissions`: paths always evaluated.
DEFAULT_ACL_PATHS = ("/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage",
                     "/vms")


def _token_acls(privileged: bool) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The simulated user.cfg ACLs (path -> privileges, propagate) of the privsep token and
    its user: PVEAuditor on / (only with Sys.Audit) and the Balancer role on /vms."""
    acls: dict[str, tuple[tuple[str, ...], bool]] = {"/vms": (BALANCER_ROLE, True)}
    if privileged:
        acls["/"] = (PVE_AUDITOR, True)
    return acls


def _path_privileges(acls: dict[str, tuple[tuple[str, ...], bool]], path: str) -> dict[str, int]:
    """AccessControl.pm `roles` + RPCEnvironment.pm `$compile_acl_path`: walking down the
    path, an ACL counts on an ancestor only if it propagates and always on the path itself;
    a deeper one replaces what was inherited. Values are the propagate flag, 1/0."""
    parts = [part for part in path.split("/") if part]
    prefixes = ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
    granted: dict[str, int] = {}
    for i, prefix in enumerate(prefixes):
        acl = acls.get(prefix)
        if acl is not None and (acl[1] or i == len(prefixes) - 1):
            granted = dict.fromkeys(acl[0], int(acl[1]))
    return granted


@route("GET", "/access/permissions", {"path": STR, "userid": STR})
def permissions(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    """pve-access-control API2/AccessControl.pm `permissions`: with `path` that path alone
    (`{}` when nothing is granted); else RPCEnvironment.pm `get_effective_permissions` over
    the default paths, the ACL paths and pool members' paths, leaving out empty ones."""
    acls = _token_acls(ctx.privileged)
    if p.get("path"):
        return {p["path"]: _path_privileges(acls, p["path"])}
    paths = {*DEFAULT_ACL_PATHS, *acls}
    paths.update(f"/vms/{g.vmid}" for g in c.guests.values() if g.spec.pool)
    result = {path: _path_privileges(acls, path) for path in sorted(paths)}
    return {path: privs for path, privs in result.items() if privs}


@route("POST", "/access/ticket",
       {"username": required(STR), "password": required(STR), "realm": STR, "otp": STR,
        "path": STR, "privs": STR, "tfa-challenge": STR, "new-format": BOOL}, public=True)
def access_ticket(c: Cluster, ctx: Ctx, p: dict[str, Any]) -> Any:
    raise AssertionError("answered by the Api itself")  # pragma: no cover


def ensure_node(c: Cluster, name: str) -> None:
    """PVE resolves the node name before proxying; unknown names fail the lookup."""
    if name not in c.nodes:
        raise ApiError(
            500,
            f"hostname lookup '{name}' failed - failed to get address info for: {name}: "
            "Name or service not known",
        )


__all__ = ["GIB", "ensure_node", "guest_resource", "lxc_config", "node_entry", "qemu_config"]
