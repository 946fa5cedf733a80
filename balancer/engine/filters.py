"""Target and source filters: one small function per rule, each `Rejection | None`.

Node-only filters (`TARGET_NODE_FILTERS`, `SOURCE_FILTERS`) depend on the node alone and run
once per decision (Nova's `run_filter_once_per_request`); `PAIR_FILTERS` run per
(guest, target). Each filter passes when its rule does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from balancer.model import Guest, Node

from .context import Context
from .rules import Rule, reject
from .types import Rejection
from .views import NodeView, Resource

#: Float slack so a move landing exactly on the midpoint is not lost to rounding.
EPSILON = 1e-9

NodeFilter = Callable[[Node, Context], Rejection | None]


class Placement(NamedTuple):
    """One candidate move: `after` is the target once it holds the guest."""

    guest: Guest
    source: NodeView
    target: NodeView
    after: NodeView
    resource: Resource


PairFilter = Callable[[Placement, Context], Rejection | None]


# --- node-only target filters ---------------------------------------------------------------

def target_online(node: Node, ctx: Context) -> Rejection | None:
    if not node.online:
        return reject(Rule.OFFLINE, node.name, "is offline")
    if node.maxcpu <= 0 or node.maxmem <= 0:
        return reject(Rule.NO_CAPACITY, node.name,
                      f"reports no capacity (maxcpu {node.maxcpu}, maxmem {node.maxmem})")
    return None


def target_not_in_maintenance(node: Node, ctx: Context) -> Rejection | None:
    """HA maintenance, fence or gone: PVE is emptying it, we must not fill it."""
    if not node.in_maintenance:
        return None
    return reject(Rule.MAINTENANCE, node.name, f"is in HA state {node.hastate}")


def target_not_drained(node: Node, ctx: Context) -> Rejection | None:
    """A node being emptied takes nothing in, whatever the trigger."""
    why = ctx.draining.get(node.name)
    if why is None:
        return None
    return reject(Rule.DRAINED, node.name, f"is being drained ({why})")


def target_not_excluded(node: Node, ctx: Context) -> Rejection | None:
    if node.name not in ctx.config.exclude_nodes:
        return None
    return reject(Rule.EXCLUDED_NODE, node.name, "is in exclude_nodes")


def target_below_cpu_limit(node: Node, ctx: Context) -> Rejection | None:
    """Already at the limit before any move: no guest can fit, so decide it once."""
    cpu = ctx.views[node.name].cpu
    if cpu < ctx.cpu_limit:
        return None
    return reject(Rule.CPU_HEADROOM, node.name,
                  f"{cpu:.2f} before any move >= {ctx.cpu_limit:.2f} {ctx.cpu_limit_text}",
                  cpu, ctx.cpu_limit)


def target_below_memory_limit(node: Node, ctx: Context) -> Rejection | None:
    memory = ctx.views[node.name].memory
    if memory < ctx.memory_limit:
        return None
    return reject(Rule.MEMORY_HEADROOM, node.name,
                  f"{memory:.2f} before any move >= {ctx.memory_limit:.2f} "
                  f"{ctx.memory_limit_text}", memory, ctx.memory_limit)


TARGET_NODE_FILTERS: tuple[NodeFilter, ...] = (
    target_online, target_not_in_maintenance, target_not_drained, target_not_excluded,
    target_below_cpu_limit, target_below_memory_limit,
)


# --- source filters (issue #9: maintenance nodes are PVE's to evacuate) ----------------------

def source_online(node: Node, ctx: Context) -> Rejection | None:
    return None if node.online else reject(Rule.SOURCE_OFFLINE, node.name, "is offline")


def source_not_in_maintenance(node: Node, ctx: Context) -> Rejection | None:
    if not node.in_maintenance:
        return None
    return reject(Rule.SOURCE_MAINTENANCE, node.name,
                  f"is in HA state {node.hastate}: evacuation is PVE's job")


def source_not_excluded(node: Node, ctx: Context) -> Rejection | None:
    if node.name not in ctx.config.exclude_nodes:
        return None
    return reject(Rule.SOURCE_EXCLUDED, node.name, "is in exclude_nodes")


SOURCE_FILTERS: tuple[NodeFilter, ...] = (
    source_online, source_not_in_maintenance, source_not_excluded,
)


def first_node_rejection(filters: tuple[NodeFilter, ...], node: Node,
                         ctx: Context) -> Rejection | None:
    for check in filters:
        rejection = check(node, ctx)
        if rejection is not None:
            return rejection
    return None


# --- (guest, target) filters ----------------------------------------------------------------

def target_is_other_node(p: Placement, ctx: Context) -> Rejection | None:
    if p.target.name != p.guest.node:
        return None
    return reject(Rule.SAME_NODE, p.target.name, f"already hosts vm {p.guest.vmid}")


def target_allowed_by_pve(p: Placement, ctx: Context) -> Rejection | None:
    """PVE's migrate precondition refused this node for this VM (storage not there, ...)."""
    reason = ctx.refused_targets.get(p.guest.vmid, {}).get(p.target.name)
    if reason is None:
        return None
    return reject(Rule.PVE_REFUSED, p.target.name,
                  f"refused by PVE for vm {p.guest.vmid}: {reason}")


def target_allowed_by_pin(p: Placement, ctx: Context) -> Rejection | None:
    """`plb_pin_<node>` tags limit where a guest may live; it may still move between them."""
    pins = ctx.constraints.pins.get(p.guest.vmid)
    if pins is None or p.target.name.lower() in pins:
        return None
    return reject(Rule.PINNED, p.target.name,
                  f"is not a pinned node of vm {p.guest.vmid} ({', '.join(sorted(pins))})")


def anti_affinity(p: Placement, ctx: Context) -> Rejection | None:
    """The target must host no other member of any of the guest's anti-affinity groups."""
    for group in ctx.constraints.anti_affinity.get(p.guest.vmid, ()):
        others = group.others_on(p.target.name, p.guest.vmid)
        if others:
            return reject(Rule.ANTI_AFFINITY, p.target.name,
                          f"hosts {group.describe(others)} of {group.label} "
                          f"with vm {p.guest.vmid}")
    return None


def cpu_headroom(p: Placement, ctx: Context) -> Rejection | None:
    cpu, limit = p.after.cpu, ctx.cpu_limit
    if cpu < limit:
        return None
    sign = ">" if cpu > limit else ">="
    return reject(Rule.CPU_HEADROOM, p.target.name,
                  f"{cpu:.2f} after move {sign} {limit:.2f} {ctx.cpu_limit_text}", cpu, limit)


def memory_headroom(p: Placement, ctx: Context) -> Rejection | None:
    memory, limit = p.after.memory, ctx.memory_limit
    if memory < limit:
        return None
    sign = ">" if memory > limit else ">="
    return reject(Rule.MEMORY_HEADROOM, p.target.name,
                  f"{memory:.2f} after move {sign} {limit:.2f} {ctx.memory_limit_text}",
                  memory, limit)


def no_flip_midpoint(p: Placement, ctx: Context) -> Rejection | None:
    """The target may not end above halfway between source and target: no flipped imbalance.
    It compares what the VM uses now (its cores, its host memory) on both sides; the
    headroom filters keep charging `maxmem`, the most it may grow to."""
    source, target = p.source.usage(p.resource), p.target.usage(p.resource)
    after, midpoint = _used_after(p), (source + target) / 2
    if after <= midpoint + EPSILON:
        return None
    return reject(Rule.MIDPOINT, p.target.name,
                  f"{p.resource} {after:.2f} after move > midpoint {midpoint:.2f} "
                  f"(source {p.source.name} {source:.2f}, target {target:.2f} before)",
                  after, midpoint)


def _used_after(p: Placement) -> float:
    """The target's usage once it holds what the VM uses now (one per pair: no new view)."""
    if p.resource is Resource.CPU:
        return p.after.cpu  # cores are cores: the same as the headroom's projection
    t = p.target
    return (t.mem + p.guest.host_memory) / t.maxmem if t.maxmem > 0 else 0.0


PAIR_FILTERS: tuple[PairFilter, ...] = (
    target_is_other_node, target_allowed_by_pve, target_allowed_by_pin, anti_affinity,
    cpu_headroom, memory_headroom, no_flip_midpoint,
)

#: A rule repair or a drain is not a balancing move: every filter applies but the no-flip
#: midpoint (a drain is meant to empty the node, a repair to put a rule right).
REPAIR_FILTERS: tuple[PairFilter, ...] = tuple(
    check for check in PAIR_FILTERS if check is not no_flip_midpoint)


# --- how much a target can take before a filter says no (for pruning) -------------------------

class Room(NamedTuple):
    """What a target can take from `source` before a filter rejects: threads, bytes of
    `maxmem` (what the headroom charges) and bytes of host memory (what the midpoint does)."""

    cpu: float
    memory: float
    memory_used: float = float("inf")


RoomBound = Callable[[NodeView, NodeView, Resource, Context], Room]
_NO_BOUND = float("inf")


def cpu_headroom_room(source: NodeView, target: NodeView, resource: Resource,
                      ctx: Context) -> Room:
    return Room((ctx.cpu_limit - target.cpu) * target.maxcpu, _NO_BOUND)


def memory_headroom_room(source: NodeView, target: NodeView, resource: Resource,
                         ctx: Context) -> Room:
    return Room(_NO_BOUND, (ctx.memory_limit - target.memory) * target.maxmem)


def no_flip_midpoint_room(source: NodeView, target: NodeView, resource: Resource,
                          ctx: Context) -> Room:
    half = (source.usage(resource) - target.usage(resource)) / 2
    if resource is Resource.CPU:
        return Room(half * target.maxcpu, _NO_BOUND)
    return Room(_NO_BOUND, _NO_BOUND, half * target.maxmem)


#: The filters whose verdict is a size limit, each with the room it leaves. The pipeline
#: prunes with the rooms of the filters in `PAIR_FILTERS` only, so a rule changed or dropped
#: there changes the pruning with it.
ROOMS: dict[PairFilter, RoomBound] = {
    cpu_headroom: cpu_headroom_room,
    memory_headroom: memory_headroom_room,
    no_flip_midpoint: no_flip_midpoint_room,
}


#: Size filters whose room depends on the target alone, not on the source.
TARGET_ONLY_ROOMS: frozenset[PairFilter] = frozenset({cpu_headroom, memory_headroom})


def source_free(filters: tuple[PairFilter, ...]) -> bool:
    """Whether every size filter among `filters` leaves a room that ignores the source."""
    return all(check in TARGET_ONLY_ROOMS for check in filters if check in ROOMS)


def room(source: NodeView, target: NodeView, resource: Resource, ctx: Context,
         filters: tuple[PairFilter, ...] = PAIR_FILTERS) -> Room:
    """The least room any of `filters`' size filters leaves on `target` (infinite: none)."""
    bounds = [ROOMS[check](source, target, resource, ctx) for check in filters
              if check in ROOMS]
    return Room(min((b.cpu for b in bounds), default=_NO_BOUND),
                min((b.memory for b in bounds), default=_NO_BOUND),
                min((b.memory_used for b in bounds), default=_NO_BOUND))


def first_pair_rejection(p: Placement, ctx: Context,
                         filters: tuple[PairFilter, ...] = PAIR_FILTERS) -> Rejection | None:
    """kube-style: a target's verdict is the first filter that rejects it."""
    for check in filters:
        rejection = check(p, ctx)
        if rejection is not None:
            return rejection
    return None

