"""Everything one decision reads, derived once: views, per-node guest lists, constraints.

Precomputing here keeps every later check a lookup, which is what makes a 10,000-guest
cycle cheap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from balancer.config import BalancingConfig
from balancer.model import ClusterSnapshot, Guest, Node

from .constraints import Constraints, derive_constraints
from .types import CpuReading, EngineInput
from .views import NodeView


@dataclass(frozen=True)
class Context:
    config: BalancingConfig
    snapshot: ClusterSnapshot
    readings: Mapping[str, CpuReading]
    blocked: Mapping[int, str]
    refused_targets: Mapping[int, Mapping[str, str]]
    proactive_held: Mapping[str, float] | None
    guest_cpu: Mapping[int, float] | None
    #: Nodes being emptied (node -> why): drained by an operator, or in PVE HA maintenance
    #: with `evacuate_ha_maintenance` on.
    draining: Mapping[str, str]
    #: Of those, the ones an operator drained (the rest are in HA maintenance).
    drained_by_operator: frozenset[str]
    quiet: str | None
    #: vmid -> node -> epoch seconds it left that node, within `return_window_seconds`.
    left_recently: Mapping[int, Mapping[str, float]]
    seed: int
    constraints: Constraints
    nodes: tuple[Node, ...]
    views: Mapping[str, NodeView]
    guests_by_node: Mapping[str, tuple[Guest, ...]]
    #: A target must stay below these shares after a move (threshold minus safety margin).
    cpu_limit: float
    memory_limit: float
    #: How the limits were derived, for rejection messages.
    cpu_limit_text: str
    memory_limit_text: str
    _smoothed: dict[str, tuple[Guest, ...]] = field(default_factory=dict, compare=False,
                                                   repr=False)
    _by_name: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def node(self, name: str) -> Node:
        """The node called `name` (every guest's node is one of them)."""
        found = self._by_name.get(name)
        if found is None:
            self._by_name.update((n.name, n) for n in self.nodes)
            found = self._by_name[name]
        return found

    def guests_on(self, node: str) -> tuple[Guest, ...]:
        """The guests on `node` as the triggers weigh them: their CPU is the per-guest
        average where one exists (what a VM will keep using, not a noise peak). Built for
        the few nodes a trigger looks at, not for all 10,000 guests."""
        found = self._smoothed.get(node)
        if found is None:
            found = tuple(self.smooth(g) for g in self.guests_by_node.get(node, ()))
            self._smoothed[node] = found
        return found

    def smooth(self, guest: Guest) -> Guest:
        value = None if self.guest_cpu is None else self.guest_cpu.get(guest.vmid)
        if value is None or value == guest.cpu:
            return guest
        return msgspec.structs.replace(guest, cpu=value)

    @property
    def online(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.online)


def build_context(inp: EngineInput) -> Context:
    snapshot = inp.snapshot
    nodes = tuple(sorted(snapshot.nodes, key=lambda n: n.name))
    cfg = inp.config
    return Context(
        config=inp.config,
        snapshot=snapshot,
        readings=inp.cpu,
        blocked=inp.blocked,
        refused_targets=inp.refused_targets,
        proactive_held=inp.proactive_held,
        guest_cpu=inp.guest_cpu,
        draining=_draining(nodes, inp.drained, cfg),
        drained_by_operator=frozenset(inp.drained),
        quiet=inp.quiet,
        left_recently=_within_window(inp.left_recently, snapshot.taken_at,
                                     cfg.return_window_seconds),
        seed=inp.seed,
        constraints=derive_constraints(snapshot, inp.config),
        nodes=nodes,
        views={node.name: NodeView.of(node, inp.cpu.get(node.name)) for node in nodes},
        guests_by_node=_group_by_node(snapshot.guests),
        cpu_limit=cfg.cpu_max - cfg.safety_margin,
        memory_limit=cfg.memory_max - cfg.safety_margin,
        cpu_limit_text=f"(cpu_max {cfg.cpu_max:.2f} - margin {cfg.safety_margin:.2f})",
        memory_limit_text=f"(memory_max {cfg.memory_max:.2f} - margin {cfg.safety_margin:.2f})",
    )


#: The HA state PVE gives a node an operator put in maintenance (`ha-manager crm-command
#: node-maintenance enable`); "fence" and "gone" are failures, not something to drain.
HA_MAINTENANCE = "maintenance"


def _draining(nodes: tuple[Node, ...], drained: Mapping[str, str],
              cfg: BalancingConfig) -> dict[str, str]:
    found = dict(drained)
    if cfg.evacuate_ha_maintenance:
        for node in nodes:
            if node.hastate == HA_MAINTENANCE and node.name not in found:
                found[node.name] = "in PVE HA maintenance (evacuate_ha_maintenance)"
    return found


def _within_window(left: Mapping[int, Mapping[str, float]], now: float,
                   window: float) -> dict[int, dict[str, float]]:
    """The departures still inside the window (the store expires them too; the engine does
    not rely on it). A window of 0 turns the preference off."""
    if window <= 0:
        return {}
    found: dict[int, dict[str, float]] = {}
    for vmid, nodes in left.items():
        recent = {node: at for node, at in nodes.items() if now - at <= window}
        if recent:
            found[vmid] = recent
    return found


def _group_by_node(guests: tuple[Guest, ...]) -> dict[str, tuple[Guest, ...]]:
    """Guests per node, in snapshot order (sources sort their own few guests by vmid)."""
    grouped: dict[str, list[Guest]] = defaultdict(list)
    for guest in guests:
        grouped[guest.node].append(guest)
    return {node: tuple(found) for node, found in grouped.items()}
