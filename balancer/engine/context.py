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
    refused_targets: Mapping[int, Mapping[str, str]]
    proactive_held: Mapping[str, float] | None
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


def _group_by_node(guests: tuple[Guest, ...]) -> dict[str, tuple[Guest, ...]]:
    """Guests per node, in snapshot order (sources sort their own few guests by vmid)."""
    grouped: dict[str, list[Guest]] = defaultdict(list)
    for guest in guests:
        grouped[guest.node].append(guest)
    return {node: tuple(found) for node, found in grouped.items()}
