"""`pve-balancer check`: can we reach PVE, may we do our job, and what does the cluster look
like. Builds a structured report; printing it is the CLI's job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from balancer.model import ClusterSnapshot, GuestType
from balancer.pve.client import PveClient
from balancer.pve.errors import PveAuthError, PveError, PveUnreachable
from balancer.pve.snapshot import read_snapshot

#: (privilege, ACL path, why the balancer needs it)
REQUIRED_PRIVILEGES: tuple[tuple[str, str, str], ...] = (
    ("Sys.Audit", "/",
     "without it /cluster/tasks lists no task at all for a token (PVE compares the task's "
     "user with the token id), so migrations run by people or HA go unseen, and HA rules, "
     "HA status and cluster options cannot be read"),
    ("Sys.Audit", "/nodes",
     "nodes are missing from /cluster/resources (grant Sys.Audit on / with propagate)"),
    ("VM.Audit", "/vms", "guests are missing from /cluster/resources"),
    ("VM.Migrate", "/vms", "guests cannot be migrated"),
)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """`lines` describe what was found; `problems` must be fixed; `notes` are worth knowing."""

    ok: bool
    lines: tuple[str, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    host: str | None = None
    pve_version: str | None = None
    snapshot: ClusterSnapshot | None = None


#: Paths `/access/permissions` always evaluates (pve-access-control RPCEnvironment.pm
#: get_effective_permissions, 5ccd07d); one missing from the answer grants nothing.
ALWAYS_LISTED_PATHS = frozenset({"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn",
                                 "/storage", "/vms"})


def has_privilege(permissions: Mapping[str, Mapping[str, bool]], privilege: str,
                  path: str) -> bool:
    """Whether `privilege` holds on `path` given `/access/permissions` output: the entry for
    the path itself, else the nearest listed ancestor whose grant propagates."""
    if privilege in permissions.get(path, {}):
        return True
    if path in permissions or path in ALWAYS_LISTED_PATHS:
        return False
    parent = path
    while parent not in ("", "/"):
        parent = parent.rsplit("/", 1)[0] or "/"
        privs = permissions.get(parent)
        if privs is not None:
            return bool(privs.get(privilege))
    return False


def run_check(client: PveClient) -> CheckReport:
    lines: list[str] = []
    problems: list[str] = []
    notes: list[str] = []

    try:
        version = client.version()
    except (PveAuthError, PveUnreachable) as exc:
        return CheckReport(ok=False, lines=(), problems=(str(exc),))
    except PveError as exc:
        return CheckReport(ok=False, lines=(), problems=(f"cannot read the PVE version: {exc}",))
    lines.append(f"connected to {client.active_host} as {client.token_id}: PVE {version}")
    major = version.split(".", 1)[0]
    if not (major.isdigit() and int(major) >= 9):
        problems.append(f"PVE {version} is not supported; pve-balancer needs PVE 9 or newer")

    try:
        permissions = client.permissions()
    except PveError as exc:
        problems.append(f"cannot read the token's permissions: {exc}")
        permissions = None
    if permissions is not None:
        for privilege, path, why in REQUIRED_PRIVILEGES:
            if has_privilege(permissions, privilege, path):
                lines.append(f"privilege {privilege} on {path}: ok")
                continue
            partial = sorted(p for p, privs in permissions.items()
                             if privilege in privs and p.startswith(path.rstrip("/") + "/"))
            hint = f" (only on {', '.join(partial[:5])})" if partial else ""
            problems.append(f"missing {privilege} on {path}{hint}: {why}")

    try:
        read = read_snapshot(client)
    except PveError as exc:
        problems.append(f"cannot read the cluster: {exc}")
        return CheckReport(ok=False, lines=tuple(lines), problems=tuple(problems),
                           notes=tuple(notes), host=client.active_host, pve_version=version)
    snap = read.snapshot
    online = [n for n in snap.nodes if n.online]
    lines.append(f"cluster {snap.cluster_name or '(standalone)'}: "
                 f"{'quorate' if snap.quorate else 'NOT quorate'}, "
                 f"{len(online)}/{len(snap.nodes)} nodes online")
    if not snap.quorate:
        problems.append("the cluster has no quorum: PVE refuses migrations")
    per_node = Counter(g.node for g in snap.guests)
    for node in snap.nodes:
        if not node.online:
            lines.append(f"  node {node.name}: offline, {per_node[node.name]} guests")
            continue
        state = f" (HA {node.hastate})" if node.in_maintenance else ""
        lines.append(
            f"  node {node.name}: cpu {node.cpu:.0%} of {node.maxcpu} threads, "
            f"memory {node.memory_ratio:.0%} of {node.maxmem / 2**30:.1f} GiB, "
            f"{per_node[node.name]} guests{state}")
    vms = [g for g in snap.guests if g.type is GuestType.QEMU and not g.template]
    cts = [g for g in snap.guests if g.type is GuestType.LXC and not g.template]
    templates = sum(1 for g in snap.guests if g.template)
    lines.append(f"guests: {len(vms)} VMs ({sum(g.running for g in vms)} running), "
                 f"{len(cts)} containers, {templates} templates, "
                 f"{sum(g.ha_managed for g in snap.guests)} HA-managed")
    try:
        rules = client.ha_rules()
    except PveError as exc:
        problems.append(f"cannot read HA rules: {exc}")
    else:
        skipped = []
        if rules.disabled:
            skipped.append(f"{len(rules.disabled)} disabled")
        if rules.infeasible:
            skipped.append(f"{len(rules.infeasible)} ignored by PVE as infeasible")
        lines.append(f"HA rules: {len(rules.node_affinity)} node-affinity, "
                     f"{len(rules.resource_affinity)} resource-affinity in force"
                     + (f" ({', '.join(skipped)})" if skipped else ""))
    lines.append(f"PVE HA auto-rebalance: {'on' if snap.ha_auto_rebalance else 'off'}")
    if snap.ha_auto_rebalance:
        notes.append("PVE's own HA auto-rebalance is on: it moves HA-managed guests itself; "
                     "leave those to PVE (balancing.leave_ha_to_pve) to avoid ping-pong")
    if read.running_migrations:
        lines.append(f"migrations in flight: "
                     f"{', '.join(str(m.vmid) for m in read.running_migrations[:10])}")
    notes.extend(snap.warnings)
    return CheckReport(ok=not problems, lines=tuple(lines), problems=tuple(problems),
                       notes=tuple(notes), host=client.active_host, pve_version=version,
                       snapshot=snap)
