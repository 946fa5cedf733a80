"""The shared filter -> score step: one guest against every target node.

Node-only verdicts are computed once per decision and shared by every candidate; only the
targets that pass them are checked per pair, and only those that pass everything are scored.
"""

from __future__ import annotations

from balancer.model import Guest

from .context import Context
from .filters import (
    TARGET_NODE_FILTERS,
    Placement,
    first_node_rejection,
    first_pair_rejection,
)
from .score import TargetKey, target_key
from .types import CandidateVerdict, Move, TargetVerdict, Trigger
from .views import NodeView, Resource, cpu_share

RESOURCE_OF: dict[Trigger, Resource] = {
    Trigger.CPU: Resource.CPU,
    Trigger.MEMORY: Resource.MEMORY,
    Trigger.PROACTIVE: Resource.MEMORY,
}


class Pipeline:
    """Places guests for one decision; caches the node-only verdicts per source."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._gates = {n.name: first_node_rejection(TARGET_NODE_FILTERS, n, ctx)
                       for n in ctx.nodes}
        self._split: dict[str, tuple[tuple[TargetVerdict, ...], tuple[NodeView, ...]]] = {}

    def targets(self, source: str) -> tuple[tuple[TargetVerdict, ...], tuple[NodeView, ...]]:
        """(verdicts for nodes closed to everyone, views of nodes still open) for a source."""
        if source not in self._split:
            others = [n.name for n in self.ctx.nodes if n.name != source]
            closed = tuple(TargetVerdict(name, self._gates[name]) for name in others
                           if self._gates[name] is not None)
            open_ = tuple(self.ctx.views[name] for name in others if self._gates[name] is None)
            self._split[source] = (closed, open_)
        return self._split[source]

    def place(self, guest: Guest, source: NodeView, trigger: Trigger) -> CandidateVerdict:
        """Every target's verdict for one eligible guest, and the best valid target if any."""
        resource = RESOURCE_OF[trigger]
        closed, open_ = self.targets(source.name)
        verdicts: list[TargetVerdict] = []
        best: tuple[TargetKey, str] | None = None
        for target in open_:
            after = target.with_guest(guest)
            rejection = first_pair_rejection(
                Placement(guest, source, target, after, resource), self.ctx)
            verdicts.append(TargetVerdict(target.name, rejection))
            if rejection is None:
                key = target_key(after, resource)
                best = min(best, (key, target.name)) if best else (key, target.name)
        return CandidateVerdict(guest.vmid, guest.name, source.name, trigger,
                                targets=closed + tuple(verdicts),
                                target=best[1] if best else None)

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
