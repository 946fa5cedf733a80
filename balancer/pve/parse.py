"""Pure parsers from PVE API payloads (already JSON-decoded) to records.

Nothing here talks to the network, so every function can be fed hand-written or fuzzed
payloads. A parser never trusts a field: wrong types, nulls, NaN and negative numbers are
reported as warnings, or as `SnapshotUnusable` where going on would mislead the engine.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from balancer.model import NodeAffinityRule, ResourceAffinityRule
from balancer.pve.errors import SnapshotUnusable
from balancer.pve.records import (
    HA_MOVING_STATES,
    MIGRATION_TASK_TYPES,
    ClusterOptions,
    ClusterStatus,
    HaRules,
    HaService,
    HaStatus,
    Precondition,
    RunningMigration,
    TaskInfo,
    TaskStatus,
    VmStatus,
)
from balancer.pve.wire import ResourceEntry

#: A CRM round (~10 s) with room: a manager status written this long after a `hamigrate` ended
#: has seen its command. Both times are PVE's, so no clock of ours is compared with them.
CRM_ROUND_SECONDS = 20.0
#: Past this (by our clock), a request the CRM still shows no trace of is given up on.
HAMIGRATE_GIVE_UP_SECONDS = 600.0

#: CRS schedulers under which PVE's HA auto-rebalance runs at all.
AUTO_REBALANCE_SCHEDULERS = frozenset({"static", "dynamic"})

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
_TAG_SPLIT = re.compile(r"[;,\s]+")
_SID = re.compile(r"^(?:(vm|ct):)?(\d+)$")


# --- scalar helpers ------------------------------------------------------------------------

def number(value: Any) -> float | None:
    """A finite number from a JSON number or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def integer(value: Any) -> int | None:
    """A whole number (JSON int, integral float, digit string); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    parsed = number(value)
    if parsed is None or not parsed.is_integer():
        return None
    return int(parsed)


def flag(value: Any) -> bool | None:
    """A PVE boolean (0/1, true/false, "1"/"0"); None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value != "" else None


@functools.lru_cache(maxsize=4096)
def split_tags(raw: str) -> frozenset[str]:
    """PVE tags as a set: split on `;`, `,` or whitespace, lower-cased, empties dropped
    (cached: guests share few tag strings)."""
    return frozenset(tag.lower() for tag in _TAG_SPLIT.split(raw) if tag)


def sid_vmid(sid: Any) -> int | None:
    """`vm:100` / `ct:101` / `100` -> 100."""
    if not isinstance(sid, str):
        return None
    match = _SID.match(sid.strip())
    return int(match.group(2)) if match else None


def upid_user(upid: str) -> str | None:
    """The starter from a UPID, token part included (`balancer@pve!balancer`)."""
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID":
        return None
    return parts[7] or None


def upid_node(upid: str) -> str | None:
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID":
        return None
    return parts[1] or None


def as_list(payload: Any, what: str) -> list[Any]:
    if not isinstance(payload, list):
        raise SnapshotUnusable(f"{what}: expected a list, got {type(payload).__name__}")
    return payload


# --- /cluster/status -----------------------------------------------------------------------

def parse_cluster_status(payload: Any) -> ClusterStatus:
    """Quorum, name and node membership. Unknown quorum is unusable: no decision without it."""
    entries = as_list(payload, "/cluster/status")
    warnings: list[str] = []
    clusters = [e for e in entries if isinstance(e, Mapping) and e.get("type") == "cluster"]
    online: dict[str, bool] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            warnings.append(f"/cluster/status: ignored a {type(entry).__name__} entry")
            continue
        if entry.get("type") != "node":
            continue
        name = text(entry.get("name"))
        is_online = flag(entry.get("online"))
        if name is None:
            warnings.append(f"/cluster/status: ignored a node entry without a name: "
                            f"{_brief(entry)}")
            continue
        if is_online is None:
            # Membership unknown: such a node is treated as down, never a source or target.
            warnings.append(f"/cluster/status: node {name} has no readable 'online'; "
                            "taken as offline")
        online[name] = bool(is_online)
    if len(clusters) > 1:
        raise SnapshotUnusable("/cluster/status: more than one cluster entry")
    if not clusters:
        if len(online) != 1:
            raise SnapshotUnusable("/cluster/status: no cluster entry and not exactly one node")
        return ClusterStatus(name="", quorate=True, online=online, standalone=True,
                             warnings=tuple(warnings))
    cluster = clusters[0]
    quorate = flag(cluster.get("quorate"))
    if quorate is None:
        raise SnapshotUnusable(
            f"/cluster/status: quorate is {cluster.get('quorate')!r}; cannot tell quorum")
    name = cluster.get("name")
    return ClusterStatus(name=name if isinstance(name, str) else "", quorate=quorate,
                         online=online, warnings=tuple(warnings))


# --- /cluster/ha/rules ---------------------------------------------------------------------

def parse_resources_list(raw: Any, rule: str, warnings: list[str]) -> frozenset[int]:
    if not isinstance(raw, str):
        warnings.append(f"HA rule {rule}: resources is {raw!r}, not a string")
        return frozenset()
    vmids: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        vmid = sid_vmid(part)
        if vmid is None:
            warnings.append(f"HA rule {rule}: ignored resource {part!r}")
        else:
            vmids.add(vmid)
    return frozenset(vmids)


def parse_rule_nodes(raw: Any, rule: str, warnings: list[str]) -> tuple[str, ...]:
    """`"n1:2,n2"` -> names, highest priority first (ties by name)."""
    if not isinstance(raw, str):
        warnings.append(f"HA rule {rule}: nodes is {raw!r}, not a string")
        return ()
    prioritised: dict[str, int] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, prio_text = part.partition(":")
        prio = integer(prio_text) if sep else 0
        if not name or prio is None:
            warnings.append(f"HA rule {rule}: ignored node {part!r}")
            continue
        prioritised[name] = max(prio, prioritised.get(name, prio))
    return tuple(sorted(prioritised, key=lambda n: (-prioritised[n], n)))


def parse_ha_rules(payload: Any) -> HaRules:
    """Enabled, feasible PVE 9 rules. Disabled rules and rules PVE marked with `errors` are
    left out (the CRM ignores them too); unreadable rules are left out with a warning."""
    if payload is None:
        return HaRules()
    entries = as_list(payload, "/cluster/ha/rules")
    warnings: list[str] = []
    node_rules: list[NodeAffinityRule] = []
    resource_rules: list[ResourceAffinityRule] = []
    disabled: list[str] = []
    infeasible: list[str] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            warnings.append(f"HA rules: ignored a {type(entry).__name__} entry")
            continue
        name = text(entry.get("rule"))
        if name is None:
            warnings.append(f"HA rules: ignored a rule without a name: {_brief(entry)}")
            continue
        if "disable" in entry:
            # pve-ha-manager Rules.pm skips a rule whenever the key is set, whatever its value.
            disabled.append(name)
            continue
        if entry.get("errors"):
            infeasible.append(name)
            warnings.append(f"HA rule {name} is ignored by PVE (errors: {_brief(entry['errors'])})")
            continue
        kind = entry.get("type")
        vmids = parse_resources_list(entry.get("resources"), name, warnings)
        if not vmids:
            warnings.append(f"HA rule {name}: no usable resources; ignored")
            continue
        if kind == "node-affinity":
            nodes = parse_rule_nodes(entry.get("nodes"), name, warnings)
            if not nodes:
                warnings.append(f"HA rule {name}: no usable nodes; ignored")
                continue
            raw_strict = entry.get("strict")
            strict = False if raw_strict is None else flag(raw_strict)  # null: ha-group-* rules
            if strict is None:
                warnings.append(f"HA rule {name}: strict is {entry.get('strict')!r}; "
                                "taken as strict")
                strict = True
            node_rules.append(NodeAffinityRule(name=name, vmids=vmids, nodes=nodes,
                                               strict=strict))
        elif kind == "resource-affinity":
            affinity = entry.get("affinity")
            if affinity not in ("positive", "negative"):
                warnings.append(f"HA rule {name}: affinity is {affinity!r}; ignored")
                continue
            resource_rules.append(ResourceAffinityRule(name=name, vmids=vmids,
                                                       positive=affinity == "positive"))
        else:
            warnings.append(f"HA rule {name}: unknown type {kind!r}; ignored")
    return HaRules(node_affinity=tuple(node_rules), resource_affinity=tuple(resource_rules),
                   disabled=tuple(disabled), infeasible=tuple(infeasible),
                   warnings=tuple(warnings))


# --- /cluster/options ----------------------------------------------------------------------

def parse_property_string(raw: str, default_key: str) -> dict[str, str]:
    """`ha=static,ha-auto-rebalance=1` -> dict; a bare value belongs to `default_key`."""
    out: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
        else:
            out[default_key] = key
    return out


def parse_cluster_options(payload: Any) -> ClusterOptions:
    warnings: list[str] = []
    if payload is None:
        return ClusterOptions()
    if not isinstance(payload, Mapping):
        return ClusterOptions(warnings=(f"/cluster/options: expected an object, got "
                                        f"{type(payload).__name__}; HA auto-rebalance "
                                        "taken as off",))
    raw = payload.get("crs")
    crs: dict[str, str] = {}
    if isinstance(raw, Mapping):
        crs = {str(k): str(v) for k, v in raw.items() if v is not None}
    elif isinstance(raw, str):
        crs = parse_property_string(raw, "ha")
    elif raw is not None:
        warnings.append(f"/cluster/options: crs is {_brief(raw)}; HA auto-rebalance taken as off")
    auto = False
    if "ha-auto-rebalance" in crs:
        parsed = flag(crs["ha-auto-rebalance"])
        if parsed is None:
            warnings.append(f"/cluster/options: ha-auto-rebalance is "
                            f"{crs['ha-auto-rebalance']!r}; taken as on")
            parsed = True
        auto = parsed
    scheduler = crs.get("ha", "basic")
    if auto and scheduler not in AUTO_REBALANCE_SCHEDULERS:
        # pve-ha-manager Manager.pm (b71218f) returns before rebalancing unless the CRS
        # scheduler is static or dynamic: the flag alone moves nothing.
        warnings.append(f"/cluster/options: ha-auto-rebalance is set but the HA scheduler is "
                        f"{scheduler!r}; PVE rebalances only with ha=static or ha=dynamic")
        auto = False
    return ClusterOptions(crs=crs, ha_auto_rebalance=auto, warnings=tuple(warnings))


# --- HA status -----------------------------------------------------------------------------

def parse_ha_status(payload: Any) -> HaStatus:
    """`/cluster/ha/status/manager_status`; empty when HA was never configured."""
    if not isinstance(payload, Mapping):
        return HaStatus(master_node=None)
    manager = payload.get("manager_status")
    if not isinstance(manager, Mapping):
        return HaStatus(master_node=None)
    node_status: dict[str, str] = {}
    raw_nodes = manager.get("node_status")
    if isinstance(raw_nodes, Mapping):
        node_status = {str(k): v for k, v in raw_nodes.items() if isinstance(v, str)}
    services: dict[str, HaService] = {}
    raw_services = manager.get("service_status")
    if isinstance(raw_services, Mapping):
        for sid, info in raw_services.items():
            if not isinstance(sid, str) or not isinstance(info, Mapping):
                continue
            state = text(info.get("state"))
            if state is None:
                continue
            services[sid] = HaService(sid=sid, vmid=sid_vmid(sid), node=text(info.get("node")),
                                      state=state, target=text(info.get("target")))
    return HaStatus(master_node=text(manager.get("master_node")), node_status=node_status,
                    services=services, timestamp=number(manager.get("timestamp")))


# --- tasks ---------------------------------------------------------------------------------

def parse_task(entry: Any) -> TaskInfo | None:
    """One task-list entry; None when it lacks a usable UPID."""
    if not isinstance(entry, Mapping):
        return None
    upid = text(entry.get("upid"))
    if upid is None:
        return None
    user = upid_user(upid)
    if user is None:
        base = text(entry.get("user")) or ""
        token = text(entry.get("tokenid"))
        user = f"{base}!{token}" if token and "!" not in base else base
    node = text(entry.get("node")) or upid_node(upid) or ""
    raw_id = entry.get("id")
    task_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    return TaskInfo(
        upid=upid, node=node, type=text(entry.get("type")) or "", id=task_id, user=user,
        starttime=integer(entry.get("starttime")) or 0,
        endtime=integer(entry.get("endtime")),
        status=entry.get("status") if isinstance(entry.get("status"), str) else None,
    )


def parse_tasks(payload: Any) -> list[TaskInfo]:
    if not isinstance(payload, list):
        return []
    return [task for task in map(parse_task, payload) if task is not None]


def parse_task_status(payload: Any, upid: str) -> TaskStatus:
    if not isinstance(payload, Mapping):
        raise SnapshotUnusable(f"task status for {upid}: expected an object")
    status = text(payload.get("status"))
    if status is None:
        raise SnapshotUnusable(f"task status for {upid}: no status field")
    raw_id = payload.get("id")
    exitstatus = payload.get("exitstatus")
    return TaskStatus(
        upid=upid, node=text(payload.get("node")) or upid_node(upid) or "",
        type=text(payload.get("type")) or "",
        id=str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else "",
        user=upid_user(upid) or text(payload.get("user")) or "",
        status=status, exitstatus=exitstatus if isinstance(exitstatus, str) else None,
    )


# --- migrations in flight ------------------------------------------------------------------

def find_running_migrations(tasks: Iterable[TaskInfo], ha: HaStatus, resources: Any,
                            offline_nodes: frozenset[str] = frozenset(),
                            now: float | None = None) -> list[RunningMigration]:
    """Every guest being moved: running migrate tasks, HA services in migrate/relocate, and
    guests whose resources entry says `lock: migrate` or `hastate: migrate|relocate`.

    Two task-list facts from PVE's code: pmxcfs keeps an offline node's last task list, so a
    task "running" there is stale (a crashed node would stall us until it rejoins; the lock
    and HA state still show a real move); and a `hamigrate` only queues a command that the
    CRM picks up on its next round: until a manager status written after that round, nothing
    else shows the move yet."""
    found: dict[int, dict[str, Any]] = {}

    def note(vmid: int, evidence: str, *, source: str | None = None,
             target: str | None = None, upid: str | None = None,
             user: str | None = None) -> None:
        item = found.setdefault(vmid, {"evidence": [], "source": None, "target": None,
                                       "upid": None, "user": None})
        if evidence not in item["evidence"]:
            item["evidence"].append(evidence)
        for key, value in (("source", source), ("target", target), ("upid", upid),
                           ("user", user)):
            if item[key] is None and value is not None:
                item[key] = value

    placed: dict[int | None, Any] | None = None  # vmid -> node, built only when needed
    for task in tasks:
        vmid = task.vmid
        if vmid is None or task.type not in MIGRATION_TASK_TYPES or task.node in offline_nodes:
            continue
        if task.running:
            note(vmid, f"task:{task.type}", source=task.node or None, upid=task.upid,
                 user=task.user or None)
        elif _hamigrate_queued(task, ha, now):
            if placed is None:
                placed = {integer(e.get("vmid")): e.get("node") for e in resources
                          if isinstance(e, Mapping | ResourceEntry)
                          } if isinstance(resources, list) else {}
            if placed.get(vmid, task.node) == task.node:
                note(vmid, "task:hamigrate queued", source=task.node or None,
                     upid=task.upid, user=task.user or None)
    for service in ha.services.values():
        if service.state in HA_MOVING_STATES and service.vmid is not None:
            note(service.vmid, f"ha:{service.state}", source=service.node,
                 target=service.target)
    if isinstance(resources, list):
        for entry in resources:
            # The two signs first: nearly every entry has neither (one scan of 10,000).
            if type(entry) is ResourceEntry:
                lock, hastate = entry.lock, entry.hastate
            elif isinstance(entry, Mapping):
                lock, hastate = entry.get("lock"), entry.get("hastate")
            else:
                continue
            locked = lock == "migrate"
            moving = isinstance(hastate, str) and hastate in HA_MOVING_STATES
            if not (locked or moving) or entry.get("type") not in ("qemu", "lxc"):
                continue
            vmid = integer(entry.get("vmid"))
            if vmid is None:
                continue
            node = text(entry.get("node"))
            if locked:
                note(vmid, "lock", source=node)
            if moving:
                note(vmid, f"hastate:{hastate}", source=node)
    return [RunningMigration(vmid=vmid, source=item["source"], target=item["target"],
                             evidence=tuple(item["evidence"]), upid=item["upid"],
                             user=item["user"])
            for vmid, item in sorted(found.items())]


def _hamigrate_queued(task: TaskInfo, ha: HaStatus, now: float | None) -> bool:
    """A finished `hamigrate` whose command the CRM has not had a round to act on yet."""
    if task.type != "hamigrate" or task.status != "OK" or task.endtime is None:
        return False
    if now is not None and now - task.endtime > HAMIGRATE_GIVE_UP_SECONDS:
        return False
    return ha.timestamp is None or ha.timestamp < task.endtime + CRM_ROUND_SECONDS


# --- per-VM endpoints ----------------------------------------------------------------------

def parse_vm_status(payload: Any, node: str, vmid: int) -> VmStatus:
    if not isinstance(payload, Mapping):
        raise SnapshotUnusable(f"status of {vmid} on {node}: expected an object")
    status = text(payload.get("status")) or "unknown"
    ha = payload.get("ha")
    managed = isinstance(ha, Mapping) and flag(ha.get("managed")) is True
    ha_state = text(ha.get("state")) if isinstance(ha, Mapping) and managed else None
    if managed and ha_state is None:
        ha_state = "unknown"  # a resource the CRM has not seen yet: a hamigrate would be lost
    return VmStatus(vmid=vmid, node=node, status=status, running=status == "running",
                    lock=text(payload.get("lock")), ha_managed=managed, ha_state=ha_state,
                    qmpstatus=text(payload.get("qmpstatus")))


def parse_precondition(payload: Any, node: str, vmid: int) -> Precondition:
    """PVE's migrate precondition as qemu-server's `migrate_vm_precondition` writes it.

    Every other cluster node is a key of `not_allowed_nodes`: an empty object when nothing
    blocks it (and then it is also in `allowed_nodes`), else the reasons
    (`unavailable_storages`, `unavailable-resources`, `blocking-ha-resources`). A node is
    refused only for a reason, or when it is missing from `allowed_nodes`."""
    if not isinstance(payload, Mapping):
        return Precondition(vmid=vmid, node=node, running=False,
                            blockers=("PVE returned no precondition data",))
    running = flag(payload.get("running")) is True
    malformed = [key for key, kind in (("local_disks", list), ("local_resources", list),
                                       ("allowed_nodes", list), ("not_allowed_nodes", Mapping))
                 if payload.get(key) is not None and not isinstance(payload.get(key), kind)]
    if malformed:
        # A check we cannot read is a check that did not pass.
        return Precondition(vmid=vmid, node=node, running=running, blockers=(
            f"PVE's precondition is unreadable ({', '.join(malformed)})",))
    disks = _blocking_local_disks(payload.get("local_disks"))
    resources = _blocking_local_resources(payload, running)
    blockers: list[str] = []
    if disks:
        blockers.append(f"local disks: {', '.join(disks)}")
    if resources:
        blockers.append(f"local resources: {', '.join(resources)}")
    dependents = payload.get("dependent-ha-resources")
    if isinstance(dependents, list) and dependents:
        # HA migrates positive-affinity partners along (pve-ha-manager Manager.pm): one POST
        # would move guests the decision never weighed.
        blockers.append("HA would move along: " + ", ".join(str(d) for d in dependents))
    raw_allowed = payload.get("allowed_nodes")
    allowed = frozenset(n for n in raw_allowed if isinstance(n, str)) if isinstance(
        raw_allowed, list) else frozenset()
    refused: dict[str, str] = {}
    raw_refused = payload.get("not_allowed_nodes")
    for target, why in (raw_refused.items() if isinstance(raw_refused, Mapping) else ()):
        reason = _node_refusal(str(target), why)
        if reason is not None:
            refused[str(target)] = reason
    return Precondition(vmid=vmid, node=node, running=running,
                        allowed_nodes=allowed - set(refused), refused_nodes=refused,
                        blockers=tuple(blockers), local_disks=tuple(disks),
                        local_resources=tuple(resources))


def _blocking_local_disks(raw: Any) -> list[str]:
    """Local volumes we will not copy. Our policy is no disk copy at all, except the small
    volumes qemu-server copies offline on every migration anyway (QemuMigrate.pm
    scan_local_volumes, e6352be): the cloud-init drive and the TPM state of the VM itself."""
    disks: list[str] = []
    for disk in raw if isinstance(raw, list) else []:
        if not isinstance(disk, Mapping):
            continue
        if flag(disk.get("is_cloudinit")) is True:
            continue
        if flag(disk.get("is_tpmstate")) is True and flag(disk.get("is_attached")) is True:
            continue
        disks.append(text(disk.get("volid")) or text(disk.get("drivename")) or "?")
    return disks


def _blocking_local_resources(payload: Mapping[str, Any], running: bool) -> list[str]:
    """Passthrough devices and the like. A mapped device stops a running VM unless its mapping
    supports live migration (QemuMigrate.pm prepare; the GUI's Migrate.js reads it the same
    way), whether or not PVE also listed it in `local_resources`."""
    mapped = payload.get("mapped-resource-info")
    mapped_items = list(mapped.items()) if isinstance(mapped, Mapping) else []
    live_mapped = {key for key, info in mapped_items
                   if isinstance(info, Mapping) and flag(info.get("live-migration")) is True}
    raw = payload.get("local_resources")
    blocking = [res for res in (raw if isinstance(raw, list) else [])
                if isinstance(res, str) and not (running and res in live_mapped)]
    if running:
        blocking += [str(key) for key, _ in mapped_items
                     if key not in live_mapped and key not in blocking]
    return blocking


def _node_refusal(target: str, why: Any) -> str | None:
    """The reason in one `not_allowed_nodes` entry; None for PVE's empty `{}` (allowed)."""
    if isinstance(why, Mapping) and not why:
        return None
    if not isinstance(why, Mapping):
        return f"target {target} not allowed (unreadable entry {_brief(why)})"
    details: list[str] = []
    storages = why.get("unavailable_storages")
    if isinstance(storages, list) and storages:
        details.append("storage not available there: " + ", ".join(str(s) for s in storages))
    unavailable = why.get("unavailable-resources")
    if isinstance(unavailable, list) and unavailable:
        details.append("mapped resources missing there: "
                       + ", ".join(str(s) for s in unavailable))
    blocking = why.get("blocking-ha-resources")
    if isinstance(blocking, list) and blocking:
        parts = [f"{b.get('sid')} ({b.get('cause')})" for b in blocking
                 if isinstance(b, Mapping)]
        details.append("blocked by HA resources: " + ", ".join(parts))
    others = sorted(str(k) for k in why if k not in (
        "unavailable_storages", "unavailable-resources", "blocking-ha-resources"))
    if others:
        details.append("also: " + ", ".join(others))
    return f"target {target} not allowed" + (f" ({'; '.join(details)})" if details else "")


def _brief(value: Any, limit: int = 120) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
