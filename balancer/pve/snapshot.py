"""Build the engine's `ClusterSnapshot` from PVE payloads, and read those payloads cheaply.

`build_snapshot` is a pure function of the decoded payloads. It leaves out (with a warning)
what it cannot read and raises `SnapshotUnusable` where leaving something out would mislead
the engine: an online node without usable numbers, two guests with one VMID, unknown quorum.

`read_snapshot` costs two API calls per cycle (`/cluster/resources`, `/cluster/status`); HA
rules, HA status and cluster options come from the shared cache (~60 s), the cluster task list
from the cache (~10 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from balancer.model import (
    GUEST_HA_STATES,
    NODE_HA_STATES,
    ClusterSnapshot,
    Guest,
    GuestType,
    Node,
    UnreadableGuest,
)
from balancer.pve.errors import SnapshotUnusable
from balancer.pve.parse import (
    as_list,
    find_running_migrations,
    flag,
    integer,
    number,
    parse_cluster_options,
    parse_cluster_status,
    parse_ha_rules,
    parse_ha_status,
    parse_tasks,
    split_tags,
    text,
)
from balancer.pve.records import RunningMigration
from balancer.pve.wire import (
    GUEST_CPU_MAX,
    MAX_GUEST_VCPUS,
    MAX_MEMORY,
    MAX_NODE_THREADS,
    ResourceEntry,
    as_entry,
)

if TYPE_CHECKING:
    from balancer.pve.client import PveClient

log = logging.getLogger(__name__)

#: One /cluster/resources entry: decoded typed, or generically (a dict) when the typed
#: decode refused the answer, or as a test or a saved snapshot gives it.
Entry = ResourceEntry | Mapping[str, Any]

#: Resource types in /cluster/resources that are not guests or nodes; skipped silently.
OTHER_RESOURCE_TYPES = frozenset({"storage", "pool", "sdn", "network"})

#: Node HA states an idle CRM leaves behind; `maintenance` is an operator's request and stays.
STALE_HA_NODE_STATES = frozenset({"unknown", "fence", "gone"})

#: A node's cpu is a share of all its threads; a little above 1.0 is sampling noise.
NODE_CPU_TOLERANCE = 1.05


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """One cycle's read: the snapshot, what is moving right now, and the calls it cost."""

    snapshot: ClusterSnapshot
    running_migrations: tuple[RunningMigration, ...]
    api_calls: int = 0

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.snapshot.warnings


def build_snapshot(resources: Any, status: Any, rules: Any = None, options: Any = None,
                   taken_at: float = 0.0, ha_stale: bool = False) -> ClusterSnapshot:
    """Turn decoded `/cluster/resources`, `/cluster/status`, `/cluster/ha/rules` and
    `/cluster/options` payloads into a validated `ClusterSnapshot`.

    Raises `SnapshotUnusable` and nothing else on bad input."""
    try:
        return _build(resources, status, rules, options, taken_at, ha_stale)
    except SnapshotUnusable:
        raise
    except Exception as exc:  # a parser bug must still only skip the cycle
        log.exception("unexpected error while building the snapshot")
        raise SnapshotUnusable(f"payload could not be read: {type(exc).__name__}: {exc}") from exc


def _build(resources: Any, status: Any, rules: Any, options: Any,
           taken_at: float, ha_stale: bool) -> ClusterSnapshot:
    entries = as_list(resources, "/cluster/resources")
    cluster = parse_cluster_status(status)
    warnings: list[str] = list(cluster.warnings)

    node_entries = [_as_mapping(e) for e in entries if _kind(e) == "node"]
    nodes = _nodes(node_entries, cluster.online, warnings, ha_stale)
    missing = sorted(set(name for name, up in cluster.online.items() if up)
                     - {node.name for node in nodes})
    if missing:
        # Its guests would be missing too: anti-affinity partners, pins, the load on it.
        raise SnapshotUnusable(f"node(s) {', '.join(missing)} online in /cluster/status but "
                               "not in /cluster/resources: the read is incomplete")
    if not any(node.online for node in nodes):
        raise SnapshotUnusable("resources: no online node with usable numbers")
    guests, unreadable = _guests(entries, {node.name: node.online for node in nodes},
                                 warnings)

    ha_rules = parse_ha_rules(rules)
    warnings.extend(ha_rules.warnings)
    cluster_options = parse_cluster_options(options)
    warnings.extend(cluster_options.warnings)

    return ClusterSnapshot(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        guests=tuple(sorted(guests, key=attrgetter("vmid"))),
        node_affinity=ha_rules.node_affinity,
        resource_affinity=ha_rules.resource_affinity,
        quorate=cluster.quorate,
        ha_auto_rebalance=cluster_options.ha_auto_rebalance,
        cluster_name=cluster.name,
        taken_at=taken_at,
        warnings=tuple(warnings),
        unreadable_guests=tuple(unreadable),
    )


def _nodes(entries: list[Mapping[str, Any]], membership: Mapping[str, bool],
           warnings: list[str], ha_stale: bool = False) -> list[Node]:
    nodes: dict[str, Node] = {}
    for entry in entries:
        name = text(entry.get("node"))
        if name is None:
            raw_id = entry.get("id")
            if isinstance(raw_id, str) and raw_id.startswith("node/") and len(raw_id) > 5:
                name = raw_id[5:]
        if name is None:
            warnings.append(f"resources: ignored a node entry without a name: {entry.get('id')!r}")
            continue
        if name in nodes:
            raise SnapshotUnusable(f"resources: node {name} is listed twice")
        hastate = entry.get("hastate")
        if hastate is not None and not (isinstance(hastate, str) and hastate in NODE_HA_STATES):
            warnings.append(f"node {name}: hastate {hastate!r} is not an HA node state; "
                            "taken as unknown (never a source or target)")
            hastate = "unknown"
        # corosync's membership is fresher than the resource list; either saying down wins.
        online = entry.get("status") == "online" and membership.get(name, True)
        if ha_stale and online and hastate in STALE_HA_NODE_STATES:
            warnings.append(f"node {name}: HA state {hastate!r} is from an idle CRM's old "
                            "status; corosync says online")
            hastate = None
        maxcpu = integer(entry.get("maxcpu"))
        maxmem = integer(entry.get("maxmem"))
        if not online:
            nodes[name] = Node(
                name=name, online=False, cpu=0.0,
                maxcpu=maxcpu if maxcpu is not None and maxcpu > 0 else 0, mem=0,
                maxmem=maxmem if maxmem is not None and maxmem > 0 else 0, hastate=hastate)
            continue
        if not any(key in entry for key in ("cpu", "maxcpu", "mem", "maxmem")):
            # pve-manager Cluster.pm leaves a node's numbers out when the reader lacks
            # Sys.Audit on /nodes/NAME (exclude_stats).
            raise SnapshotUnusable(f"online node {name} has no usage numbers: the token may "
                                   f"lack Sys.Audit on /nodes/{name}")
        cpu = number(entry.get("cpu"))
        mem = integer(entry.get("mem"))
        problems = []
        if cpu is None or not 0.0 <= cpu <= NODE_CPU_TOLERANCE:
            problems.append(f"cpu={entry.get('cpu')!r}")
        if maxcpu is None or not 1 <= maxcpu <= MAX_NODE_THREADS:
            problems.append(f"maxcpu={entry.get('maxcpu')!r}")
        if maxmem is None or not 1 <= maxmem <= MAX_MEMORY:
            problems.append(f"maxmem={entry.get('maxmem')!r}")
        if mem is None or mem < 0 or (maxmem is not None and mem > maxmem):
            problems.append(f"mem={entry.get('mem')!r}")
        if problems or cpu is None or maxcpu is None or maxmem is None or mem is None:
            raise SnapshotUnusable(
                f"online node {name} has unusable numbers: {', '.join(problems)}")
        if cpu > 1.0:
            cpu = 1.0
        nodes[name] = Node(name=name, online=True, cpu=cpu, maxcpu=maxcpu, mem=mem,
                           maxmem=maxmem, hastate=hastate)
    return list(nodes.values())


#: The resource types that are guests, and the kind each one is.
GUEST_TYPES = {"qemu": GuestType.QEMU, "lxc": GuestType.LXC}


def _kind(entry: Any) -> Any:
    """An entry's `type`, whichever way it was decoded (None for a non-entry)."""
    if type(entry) is ResourceEntry:
        return entry.type
    return entry.get("type") if isinstance(entry, Mapping) else None


def _guests(entries: list[Any], node_names: Mapping[str, bool],
            warnings: list[str]) -> tuple[list[Guest], list[UnreadableGuest]]:
    """The readable guests, and what is known of the others (they still occupy a node). One
    pass over the entries: this is the loop 10,000 guests go through every cycle."""
    guests: list[Guest] = []
    unreadable: list[UnreadableGuest] = []
    seen: set[int] = set()
    duplicates: set[int] = set()
    for raw in entries:
        typed: ResourceEntry | None
        if type(raw) is ResourceEntry:  # the every-cycle case: no Mapping ABC check
            typed, kind = raw, raw.type
        elif isinstance(raw, Mapping):
            kind = raw.get("type")
            typed = as_entry(raw) if type(kind) is str and kind in GUEST_TYPES else None
        else:
            warnings.append(f"resources: ignored a {type(raw).__name__} entry")
            continue
        guest_type = GUEST_TYPES.get(kind) if type(kind) is str else None
        if guest_type is None:
            if kind != "node" and not (type(kind) is str and kind in OTHER_RESOURCE_TYPES):
                warnings.append(f"resources: ignored entry {raw.get('id')!r} of unknown type "
                                f"{kind!r}")
            continue
        vmid = typed.vmid if typed is not None and type(typed.vmid) is int else integer(
            raw.get("vmid"))
        if vmid is None or vmid < 1:
            warnings.append(f"resources: ignored a guest with vmid {raw.get('vmid')!r}")
            unreadable.append(_unreadable(_as_mapping(raw), None, "no readable vmid",
                                          node_names))
            continue
        if vmid in seen:
            duplicates.add(vmid)
            continue
        seen.add(vmid)
        guest = None if typed is None else _typical_guest(typed, guest_type, vmid, node_names)
        if guest is not None:
            guests.append(guest)
            continue
        entry = _as_mapping(raw)
        guest, problem = _careful_guest(entry, guest_type, vmid, node_names)
        if guest is None:
            warnings.append(f"guest {vmid}: {problem}; left out")
            unreadable.append(_unreadable(entry, vmid, problem, node_names))
        else:
            guests.append(guest)
    if duplicates:
        raise SnapshotUnusable(f"resources: VMID(s) listed more than once: "
                               f"{', '.join(map(str, sorted(duplicates)[:10]))}")
    return guests, unreadable


def _as_mapping(raw: Entry) -> Mapping[str, Any]:
    return raw.to_dict() if isinstance(raw, ResourceEntry) else raw


def _unreadable(entry: Mapping[str, Any], vmid: int | None, problem: str,
                node_names: Mapping[str, bool]) -> UnreadableGuest:
    node = text(entry.get("node"))
    tags = entry.get("tags")
    return UnreadableGuest(
        vmid=vmid, node=node if node in node_names else None,
        tags=frozenset() if tags is None else split_tags(tags) if isinstance(tags, str)
        else None,
        problem=problem)


def _careful_guest(entry: Mapping[str, Any], kind: GuestType, vmid: int,
                   node_names: Mapping[str, bool]) -> tuple[Guest | None, str]:
    """One guest entry as pve-manager's `resources` (API2/Cluster.pm, 14a22df) builds it from
    pvestatd's RRD broadcast (see pvesim/CONFORMANCE.md for the values PVE really sends),
    every field checked for what it may be; what cannot be read is said."""
    node = text(entry.get("node"))
    if node is None:
        return None, f"node is {entry.get('node')!r}"
    if node not in node_names:
        return None, f"node {node!r} is not in the node list"
    status = entry.get("status")
    if status is None:
        status = "unknown"
    if not isinstance(status, str):
        return None, f"status is {status!r}"
    if not node_names[node]:
        # pmxcfs keeps an offline node's last broadcast for 5 minutes (status.c): stale.
        status = "unknown"
    running = status == "running"

    tags_raw = entry.get("tags")
    if tags_raw is not None and not isinstance(tags_raw, str):
        return None, f"tags is {tags_raw!r}"  # exclusions hide in tags: never guess
    lock = entry.get("lock")
    if lock is not None and not isinstance(lock, str):
        return None, f"lock is {lock!r}"
    hastate = entry.get("hastate")
    if hastate is not None and not isinstance(hastate, str):
        return None, f"hastate is {hastate!r}"
    if "hastate" in entry and hastate is None:
        # An HA resource added without a state, not yet seen by the CRM (Cluster.pm sends the
        # raw resources.cfg value, undef): HA is about to act on it.
        hastate = "unknown"
    if hastate and hastate not in GUEST_HA_STATES:
        hastate = "unknown"  # an HA state we do not know: HA may be acting; never a candidate
    template = flag(entry.get("template", 0))
    if template is None:
        return None, f"template is {entry.get('template')!r}"

    # Numbers: a running guest must have all of them; others may lack them (no RRD data yet).
    values: dict[str, float] = {}
    defaults: dict[str, float] = {"cpu": 0.0, "maxcpu": 1.0, "mem": 0, "maxmem": 0}
    for key, default in defaults.items():
        raw = entry.get(key)
        parsed = _guest_number(key, raw)
        if parsed is not None and _plausible(key, parsed, running):
            values[key] = parsed
        elif running or raw is not None:
            return None, f"{key} is {raw!r}"
        else:
            values[key] = default
    memhost, readable = _memhost(entry.get("memhost"), kind)
    if not readable:
        return None, f"memhost is {entry.get('memhost')!r}"
    name = entry.get("name")
    return Guest(
        vmid=vmid, name=name if isinstance(name, str) else "", type=kind, node=node,
        status=status, cpu=values["cpu"], maxcpu=values["maxcpu"],
        mem=int(values["mem"]), maxmem=int(values["maxmem"]),
        memhost=memhost,
        template=template, tags=split_tags(tags_raw) if tags_raw else frozenset(),
        lock=lock or None, hastate=hastate or None,
    ), ""


def _typical_guest(entry: ResourceEntry, kind: GuestType, vmid: int,
                   node_names: Mapping[str, bool]) -> Guest | None:
    """The guest of an entry PVE sent exactly as its schema says, on an online node; None
    sends the entry to the careful path (which reads it the same way, or says what is wrong).
    The decoder checked the JSON types and the physical bounds (`wire.py`); what is left are
    the checks that depend on other fields. At 10,000 guests this is most of a snapshot."""
    node, status = entry.node, entry.status
    cpu, maxcpu, mem, maxmem = entry.cpu, entry.maxcpu, entry.mem, entry.maxmem
    if (type(node) is not str or not node_names.get(node) or type(status) is not str
            or cpu is UNSET or maxcpu is UNSET or mem is UNSET or maxmem is UNSET
            or maxcpu > MAX_GUEST_VCPUS or (maxmem < 1 and status == "running")):
        return None
    hastate, memhost, tags, name = entry.hastate, entry.memhost, entry.tags, entry.name
    if hastate is None or (hastate and hastate not in GUEST_HA_STATES):
        return None  # null: an HA resource the CRM has not seen yet (the careful path says so)
    return Guest(
        vmid, name if type(name) is str else "", kind, node, status, cpu if cpu > 0 else 0.0,
        maxcpu, mem, maxmem, memhost if memhost and kind is GuestType.QEMU else None,
        entry.template == 1, split_tags(tags) if tags else frozenset(), entry.lock or None,
        hastate or None)


def _guest_number(key: str, raw: Any) -> float | None:
    """`cpu` and `maxcpu` are fractions (a container's maxcpu is `cores || cpulimit`, e.g. 1.5:
    pve-container LXC.pm vmstatus); memory is whole bytes. A container's first CPU sample
    after a restart or a return migration is negative (LXC.pm keys the previous sample by
    vmid): that is "not measured yet", so it reads as 0."""
    if key == "cpu":
        value = number(raw)
        return None if value is None else max(0.0, value)
    if key == "maxcpu":
        return number(raw)
    whole = integer(raw)
    return None if whole is None else float(whole)


def _memhost(raw: Any, kind: GuestType) -> tuple[int | None, bool]:
    """(PVE 9's host view of a VM's memory, readable?). Containers always send 0 (pvestatd
    broadcasts undef for them) and so does a VM whose cgroup could not be read: 0 means "not
    measured", and the guest's `mem` stands in for it (None)."""
    if raw is None:
        return None, True
    value = integer(raw)
    if value is None or not 0 <= value <= MAX_MEMORY:
        return None, False
    return (value if kind is GuestType.QEMU and value > 0 else None), True


def _plausible(key: str, value: float, running: bool) -> bool:
    """Whether a guest number is one PVE could report: within physical bounds, and present
    (not zero) where a running guest must have it."""
    if key == "cpu":
        return value <= GUEST_CPU_MAX
    if key == "maxcpu":
        return 0 < value <= MAX_GUEST_VCPUS
    low = 1 if key == "maxmem" and running else 0
    return low <= value <= MAX_MEMORY


#: A warning repeats every cycle while PVE keeps sending the same odd data: log it this often.
WARNING_REPEAT_SECONDS = 600.0
_last_logged: dict[str, float] = {}


def _log_warnings(warnings: tuple[str, ...]) -> None:
    now = time.monotonic()
    if len(_last_logged) > 2000:
        _last_logged.clear()
    for warning in warnings:
        last = _last_logged.get(warning)
        if last is None or now - last >= WARNING_REPEAT_SECONDS:
            _last_logged[warning] = now
            log.warning("snapshot: %s", warning)


def read_snapshot(client: PveClient) -> SnapshotRead:
    """One cycle's consistent read through `client` (2 fresh calls + cached slow data).

    Raises `SnapshotUnusable` for bad payloads and the client's `PveError`s for API trouble;
    either way the caller skips the cycle rather than act on half a cluster."""
    calls_before = client.api_calls
    client.prefetch_cached()
    resources = client.resource_entries()
    status = client.get("cluster/status")
    taken_at = client.clock()
    rules = client.ha_rules_payload()
    options = client.cluster_options_payload()
    ha = parse_ha_status(client.ha_status_payload())
    snapshot = build_snapshot(resources, status, rules, options, taken_at,
                              ha_stale=ha.stale(taken_at))
    tasks = parse_tasks(client.cluster_tasks_payload())
    offline = frozenset(node.name for node in snapshot.nodes if not node.online)
    moving = find_running_migrations(tasks, ha, resources, offline, now=taken_at)
    _log_warnings(snapshot.warnings)
    return SnapshotRead(snapshot=snapshot, running_migrations=tuple(moving),
                        api_calls=client.api_calls - calls_before)
