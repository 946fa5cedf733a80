"""The cluster as the engine sees it: plain, frozen records with explicit units.

Ratios are 0..1, memory is bytes, CPU capacity is logical threads ("cores"). The PVE client
builds these from API payloads (balancer.pve.snapshot); the engine only ever reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec


class GuestType(StrEnum):
    QEMU = "qemu"
    LXC = "lxc"


#: Node HA states in which a node must never receive (or, for us, shed) guests. `unknown`:
#: the HA manager cannot vouch for the node, so neither do we.
UNAVAILABLE_HA_STATES = frozenset({"maintenance", "fence", "gone", "unknown"})

#: Guest HA states meaning the HA manager is acting on the guest right now, or will soon.
#: `unknown` stands for a state PVE reported that we do not recognise: hands off.
HA_BUSY_STATES = frozenset(
    {"migrate", "relocate", "freeze", "fence", "recovery", "error", "request_stop",
     "request_start", "starting", "stopping", "queued", "deleting", "unknown"}
)

#: Every guest HA state PVE 9 reports (CRM service states and configured states).
GUEST_HA_STATES = HA_BUSY_STATES | {"started", "stopped", "disabled", "ignored", "enabled",
                                    "request_start_balance"}

#: Every node HA state PVE 9 reports.
NODE_HA_STATES = frozenset({"online", "maintenance", "unknown", "fence", "gone"})


@dataclass(frozen=True, slots=True)
class CpuReading:
    """A node's CPU EMA (share of its threads) and how many samples it holds.

    `from_measurement` marks a one-off reading (manual `plan` without history): it is used
    regardless of `samples`, and the explanation says so. `relieved`: a move brought the node
    under cpu_max and its EMA has stayed within `cpu_hysteresis` of cpu_max since.
    """

    value: float
    samples: int
    from_measurement: bool = False
    relieved: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    """One cluster node. `cpu` is a share of all the node's threads; `mem` is used bytes."""

    name: str
    online: bool
    cpu: float
    maxcpu: int
    mem: int
    maxmem: int
    hastate: str | None = None

    @property
    def memory_ratio(self) -> float:
        return self.mem / self.maxmem if self.maxmem > 0 else 0.0

    @property
    def in_maintenance(self) -> bool:
        """HA maintenance, fencing or gone: evacuation is PVE's job, not ours."""
        return self.hastate in UNAVAILABLE_HA_STATES


class Guest(msgspec.Struct, frozen=True, gc=False):
    """A VM or container. `cpu` is a share of the guest's *own* vCPUs and may exceed 1.0.

    A frozen `msgspec.Struct` rather than a dataclass: the snapshot builds one per guest every
    cycle, and a frozen dataclass's `__init__` (one `object.__setattr__` per field) cost 17x
    as much, a third of a 10,000-guest snapshot. Equality, hashing, immutability and
    `msgspec.structs.replace` behave as the dataclass's did. `gc=False`: its fields are
    numbers, strings and a set of strings, so it can never be part of a reference cycle, and
    10,000 fresh records a cycle no longer set off the cyclic collector (a tenth of a cycle)."""

    vmid: int
    name: str
    type: GuestType
    node: str
    status: str
    cpu: float = 0.0
    maxcpu: float = 1.0
    mem: int = 0
    maxmem: int = 0
    memhost: int | None = None
    template: bool = False
    tags: frozenset[str] = frozenset()
    lock: str | None = None
    hastate: str | None = None

    @property
    def cpu_cores(self) -> float:
        """Absolute CPU use in host threads: what the guest costs whichever node it runs on."""
        return self.cpu * self.maxcpu

    @property
    def host_memory(self) -> int:
        """Memory the guest occupies on its host now (PVE 9 `memhost` where reported)."""
        return self.memhost if self.memhost is not None else self.mem

    @property
    def ha_managed(self) -> bool:
        """`ignored` resources are out of HA's hands (pve-ha-manager Config.pm)."""
        return self.hastate is not None and self.hastate != "ignored"

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class UnreadableGuest:
    """A guest entry the snapshot had to leave out. It never moves, but it still occupies a
    node: where it may be an anti-affinity partner, the engine must refuse the targets it
    cannot rule out. `None` means that part of the entry was unreadable too."""

    vmid: int | None
    node: str | None
    tags: frozenset[str] | None
    problem: str


@dataclass(frozen=True, slots=True)
class NodeAffinityRule:
    """PVE 9 HA node-affinity rule (enabled ones only reach the engine)."""

    name: str
    vmids: frozenset[int]
    nodes: tuple[str, ...]
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ResourceAffinityRule:
    """PVE 9 HA resource-affinity rule: `positive` keeps guests together, `negative` apart."""

    name: str
    vmids: frozenset[int]
    positive: bool


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """One consistent read of the cluster. `taken_at` is epoch seconds of the read."""

    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    node_affinity: tuple[NodeAffinityRule, ...] = ()
    resource_affinity: tuple[ResourceAffinityRule, ...] = ()
    quorate: bool = True
    ha_auto_rebalance: bool = False
    cluster_name: str = ""
    taken_at: float = 0.0
    warnings: tuple[str, ...] = field(default=())
    unreadable_guests: tuple[UnreadableGuest, ...] = ()

    def node(self, name: str) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def guest(self, vmid: int) -> Guest | None:
        for guest in self.guests:
            if guest.vmid == vmid:
                return guest
        return None
