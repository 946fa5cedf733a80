"""Everything one decision reads, derived once: views, per-node guest lists, constraints.

Precomputing here keeps every later check a lookup, which is what makes a 10,000-guest
cycle cheap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

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
    seed: int
    constraints: Constraints
    nodes: tuple[Node, ...]
    views: Mapping[str, NodeView]
    guests_by_node: Mapping[str, tuple[Guest, ...]]

    @property
    def cpu_limit(self) -> float:
        """A target must stay below this CPU share after a move."""
        return self.config.cpu_max - self.config.safety_margin

    @property
    def memory_limit(self) -> float:
        """A target must stay below this memory share after a move."""
        return self.config.memory_max - self.config.safety_margin

    @property
    def online(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.online)


def build_context(inp: EngineInput) -> Context:
    snapshot = inp.snapshot
    nodes = tuple(sorted(snapshot.nodes, key=lambda n: n.name))
    return Context(
        config=inp.config,
        snapshot=snapshot,
        readings=inp.cpu,
        blocked=inp.blocked,
        seed=inp.seed,
        constraints=derive_constraints(snapshot, inp.config),
        nodes=nodes,
        views={node.name: NodeView.of(node, inp.cpu.get(node.name)) for node in nodes},
        guests_by_node=_group_by_node(snapshot.guests),
    )


def _group_by_node(guests: tuple[Guest, ...]) -> dict[str, tuple[Guest, ...]]:
    """Guests per node in vmid order, so every later iteration is deterministic."""
    grouped: dict[str, list[Guest]] = defaultdict(list)
    for guest in guests:
        grouped[guest.node].append(guest)
    return {node: tuple(sorted(found, key=lambda g: g.vmid)) for node, found in grouped.items()}
