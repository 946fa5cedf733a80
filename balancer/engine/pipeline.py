"""The shared filter -> score step: one guest against every target node.

Node-only verdicts are computed once per decision and shared by every candidate; only the
targets that pass them are checked per pair, and only those that pass everything are scored.
A guest that no open target has room for, in threads and bytes *on the same node*, is known
to fit nowhere without checking each pair; its per-target verdicts are then computed only if
someone reads them. The rooms are kept as their Pareto frontier (the targets no other target
beats in every measure), so "room on the same node" is a scan of a few points, not of every
node, even when the nodes with CPU room are not the nodes with memory room.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial

from balancer.model import Guest

from .context import Context
from .filters import (
    PAIR_FILTERS,
    REPAIR_FILTERS,
    TARGET_NODE_FILTERS,
    PairFilter,
    Placement,
    first_node_rejection,
    first_pair_rejection,
    room,
    source_free,
)
from .rules import Rule
from .score import TargetKey, recently_left, target_key
from .types import CandidateVerdict, Move, TargetVerdict, TargetVerdicts, Trigger
from .views import NodeView, Resource, cpu_share

RESOURCE_OF: dict[Trigger, Resource] = {
    Trigger.DRAIN: Resource.MEMORY,
    Trigger.RULE: Resource.MEMORY,
    Trigger.CPU: Resource.CPU,
    Trigger.MEMORY: Resource.MEMORY,
    Trigger.PROACTIVE: Resource.MEMORY,
}

#: The pair filters each trigger's moves must pass.
FILTERS_OF: dict[Trigger, tuple[PairFilter, ...]] = {Trigger.RULE: REPAIR_FILTERS,
                                                     Trigger.DRAIN: REPAIR_FILTERS}

#: What one target can take at once: threads, bytes of maxmem, bytes of host memory.
Point = tuple[float, float, float]

#: Relative slack on room estimates, far above float noise, so pruning is never too eager.
_SLACK = 1e-6


@dataclass(frozen=True)
class Targets:
    """The other nodes as one source sees them for one triggering resource. Their verdict
    lists are built on first read: a guest pruned by the frontier never needs them."""

    source: str
    every_closed: TargetVerdicts  # every node a node-only filter rejects, source included
    every_open: tuple[NodeView, ...]  # every node that passes them, source included
    resource: Resource
    filters: tuple[PairFilter, ...]
    #: (threads, bytes of maxmem, bytes of host memory) some open target can take at once,
    #: non-dominated points only, roomiest in threads first.
    frontier: tuple[Point, ...]

    @cached_property
    def closed(self) -> TargetVerdicts:
        """Rejected by a node-only filter, for every guest."""
        return tuple(v for v in self.every_closed if v.node != self.source)

    @cached_property
    def open(self) -> tuple[NodeView, ...]:
        return tuple(v for v in self.every_open if v.name != self.source)

    def may_fit(self, guest: Guest) -> bool:
        """False when no open target has room for `guest` in every measure at once."""
        cores, maxmem, used = guest.cpu_cores, guest.maxmem, guest.host_memory
        for cpu, memory, host in self.frontier:
            if cpu < cores:
                return False  # sorted: no later point has more threads
            if memory >= maxmem and host >= used:
                return True
        return False


class Pipeline:
    """Places guests for one decision; caches node-only verdicts and rooms per source."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._gates = {n.name: first_node_rejection(TARGET_NODE_FILTERS, n, ctx)
                       for n in ctx.nodes}
        self._targets: dict[tuple[str, Trigger], Targets] = {}
        self._shared: dict[Trigger, tuple[Point, ...]] = {}
        self._open_names = [n.name for n in ctx.nodes if self._gates[n.name] is None]
        self._every_open = tuple(ctx.views[name] for name in self._open_names)
        self._every_closed = tuple(TargetVerdict(n.name, self._gates[n.name])
                                   for n in ctx.nodes if self._gates[n.name] is not None)
        self._closed_rules = Counter(g.rule for g in self._gates.values() if g is not None)

    def closed_to(self, source: str) -> Counter[Rule] | None:
        """Why every other node is closed to every guest by a node check (rule -> nodes),
        or None when one is open: known without building any target's verdict (all hot at
        640 nodes built 400,000 verdicts to learn that)."""
        if any(name != source for name in self._open_names[:2]):
            return None
        rules = Counter(self._closed_rules)
        own = self._gates.get(source)
        if own is not None:
            rules[own.rule] -= 1
        return +rules

    def targets(self, source: NodeView, trigger: Trigger) -> Targets:
        key = (source.name, trigger)
        if key not in self._targets:
            self._targets[key] = self._split(source, trigger)
        return self._targets[key]

    def _split(self, source: NodeView, trigger: Trigger) -> Targets:
        resource, filters = RESOURCE_OF[trigger], FILTERS_OF.get(trigger, PAIR_FILTERS)
        if source_free(filters):
            # The same rooms for every source (a repair): one frontier over every open node.
            # Counting the source's own room too only ever prunes less, never wrongly.
            if trigger not in self._shared:
                self._shared[trigger] = self._frontier_of(source, self._every_open, resource,
                                                          filters)
            frontier = self._shared[trigger]
        else:
            frontier = self._frontier_of(
                source, [v for v in self._every_open if v.name != source.name], resource,
                filters)
        return Targets(source.name, self._every_closed, self._every_open, resource, filters,
                       frontier)

    def _frontier_of(self, source: NodeView, targets: Sequence[NodeView], resource: Resource,
                     filters: tuple[PairFilter, ...]) -> tuple[Point, ...]:
        # Slack so that float noise never prunes a guest the filters would accept.
        points = []
        for t in targets:
            r = room(source, t, resource, self.ctx, filters)
            points.append((r.cpu + _SLACK * t.maxcpu, r.memory + _SLACK * t.maxmem,
                           r.memory_used + _SLACK * t.maxmem))
        return _frontier(points)

    def place(self, guest: Guest, source: NodeView, trigger: Trigger) -> CandidateVerdict:
        """Every target's verdict for one eligible guest, and the best valid target if any."""
        targets = self.targets(source, trigger)
        if not targets.may_fit(guest):
            lazy = partial(self.verdicts, guest, source, trigger)
            return CandidateVerdict(guest.vmid, guest.name, source.name, trigger,
                                    target_verdicts=lazy)
        verdicts, best = self._evaluate(guest, source, targets)
        return CandidateVerdict(guest.vmid, guest.name, source.name, trigger,
                                target=best, target_verdicts=verdicts)

    def verdicts(self, guest: Guest, source: NodeView, trigger: Trigger) -> TargetVerdicts:
        return self._evaluate(guest, source, self.targets(source, trigger))[0]

    def _evaluate(self, guest: Guest, source: NodeView,
                  targets: Targets) -> tuple[TargetVerdicts, str | None]:
        verdicts: list[TargetVerdict] = []
        best: TargetKey | None = None
        resource = targets.resource
        for target in targets.open:
            after = target.with_guest(guest)
            rejection = first_pair_rejection(
                Placement(guest, source, target, after, resource), self.ctx, targets.filters)
            if rejection is not None:
                verdicts.append(TargetVerdict(target.name, rejection))
                continue
            demoted = recently_left(guest, target.name, self.ctx)
            verdicts.append(TargetVerdict(target.name, None, demoted))
            key = target_key(after, resource, demoted is not None)
            best = key if best is None or key < best else best
        return targets.closed + tuple(verdicts), best[-1] if best else None

    def move(self, guest: Guest, verdict: CandidateVerdict) -> Move:
        """The `Move` for a verdict that found a target, with before/after projections."""
        assert verdict.target is not None, "move() needs a verdict with a target"
        source, target = self.ctx.views[verdict.source], self.ctx.views[verdict.target]
        return Move(
            vmid=guest.vmid, name=guest.name, source=source.name, target=target.name,
            reason=verdict.trigger,
            source_before=source.utilisation,
            source_after=source.without_guest(guest).utilisation,
            target_before=target.utilisation,
            target_after=target.with_guest(guest).utilisation,
            cpu_share_source=cpu_share(guest, source),
            cpu_share_target=cpu_share(guest, target),
        )


def _frontier(points: list[Point]) -> tuple[Point, ...]:
    """The points no other point beats in all three measures, most threads first."""
    kept: list[Point] = []
    for point in sorted(points, key=lambda p: (-p[0], -p[1], -p[2])):
        if not any(k[1] >= point[1] and k[2] >= point[2] for k in kept):
            kept.append(point)  # fewer (or equal) threads than every kept one: more memory
    return tuple(kept)
