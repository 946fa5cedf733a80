"""Plain, frozen records the PVE client hands out (besides balancer.model's snapshot)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from balancer.model import NodeAffinityRule, ResourceAffinityRule

#: Task types that move a guest between nodes.
MIGRATION_TASK_TYPES = frozenset({"qmigrate", "hamigrate", "vzmigrate"})

#: Task types a migrate request of ours leaves behind (HA guests: `hamigrate`).
OUR_MIGRATE_TYPES = frozenset({"qmigrate", "hamigrate"})

#: Older than this, the CRM's status describes the past (a CRM round is ~10 s; our cache adds
#: up to a minute; the rest is room for clocks that disagree).
HA_STATUS_STALE_SECONDS = 300.0

#: HA service states in which the CRM is moving the guest.
HA_MOVING_STATES = frozenset({"migrate", "relocate"})


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """`/cluster/status`: quorum, cluster name and corosync's view of which nodes are up."""

    name: str
    quorate: bool
    online: dict[str, bool] = field(default_factory=dict)
    standalone: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One entry of a task list. `user` is the full starter, `balancer@pve!balancer` for a token."""

    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    endtime: int | None = None
    status: str | None = None

    @property
    def vmid(self) -> int | None:
        return int(self.id) if self.id.isdigit() else None

    @property
    def running(self) -> bool:
        return self.endtime is None and self.status in (None, "", "RUNNING", "running")


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """`/nodes/{node}/tasks/{upid}/status`. `exitstatus` is only set once the task stopped."""

    upid: str
    node: str
    type: str
    id: str
    user: str
    status: str
    exitstatus: str | None = None

    @property
    def running(self) -> bool:
        return self.status != "stopped"

    @property
    def ok(self) -> bool:
        """Finished successfully (`OK`, or `WARNINGS: N` which PVE counts as success)."""
        return (not self.running and self.exitstatus is not None
                and (self.exitstatus == "OK" or self.exitstatus.startswith("WARNINGS")))


@dataclass(frozen=True, slots=True)
class RunningMigration:
    """A guest that is being moved right now, from whichever source said so.

    `evidence` lists where it was seen: `task:qmigrate`, `task:hamigrate`, `task:vzmigrate`,
    `ha:migrate`, `ha:relocate` (HA manager status), `hastate:migrate` (resources), `lock`.
    """

    vmid: int
    source: str | None
    target: str | None
    evidence: tuple[str, ...]
    upid: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Precondition:
    """PVE's migrate pre-check for one VM. PVE answers for every other node at once (its
    `target` parameter is ignored), so one answer judges every target: `blockers` refuse the
    VM wherever it goes (local disks, passthrough), `refused_nodes` one node each."""

    vmid: int
    node: str
    running: bool
    allowed_nodes: frozenset[str] = frozenset()
    refused_nodes: Mapping[str, str] = field(default_factory=dict)
    blockers: tuple[str, ...] = ()
    local_disks: tuple[str, ...] = ()
    local_resources: tuple[str, ...] = ()

    def refusal(self, target: str) -> str | None:
        """Why PVE would refuse moving the VM to `target`, or None when it would not."""
        if self.blockers:
            return "; ".join(self.blockers)
        if target in self.refused_nodes:
            return self.refused_nodes[target]
        if target not in self.allowed_nodes:
            return f"target {target} is not among the allowed nodes"
        return None

    def allows(self, target: str) -> bool:
        return self.refusal(target) is None


@dataclass(frozen=True, slots=True)
class VmStatus:
    """`/nodes/{node}/qemu/{vmid}/status/current` reduced to what the balancer needs."""

    vmid: int
    node: str
    status: str
    running: bool
    lock: str | None
    ha_managed: bool
    ha_state: str | None
    qmpstatus: str | None = None


@dataclass(frozen=True, slots=True)
class HaService:
    sid: str
    vmid: int | None
    node: str | None
    state: str
    target: str | None = None


@dataclass(frozen=True, slots=True)
class HaStatus:
    """`/cluster/ha/status/manager_status`: node states and service states of the CRM."""

    master_node: str | None
    node_status: dict[str, str] = field(default_factory=dict)
    services: dict[str, HaService] = field(default_factory=dict)
    #: When the CRM last wrote it (epoch seconds, the master's clock); None when unknown.
    timestamp: float | None = None

    def stale(self, now: float) -> bool:
        """An idle CRM (no HA resources left) stops rewriting its status (pve-ha-manager
        CRM.pm), so its node states freeze: an `unknown` node may have been back for days."""
        return self.timestamp is not None and now - self.timestamp > HA_STATUS_STALE_SECONDS


@dataclass(frozen=True, slots=True)
class HaRules:
    """Parsed `/cluster/ha/rules`: enabled, feasible rules plus the names of those left out."""

    node_affinity: tuple[NodeAffinityRule, ...] = ()
    resource_affinity: tuple[ResourceAffinityRule, ...] = ()
    disabled: tuple[str, ...] = ()
    infeasible: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The parts of `/cluster/options` the balancer reads: PVE's own HA scheduler settings."""

    crs: dict[str, str] = field(default_factory=dict)
    ha_auto_rebalance: bool = False
    warnings: tuple[str, ...] = ()
