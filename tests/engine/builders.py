"""Tiny builders for engine tests: readable numbers in, frozen model objects out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from balancer.config import BalancingConfig
from balancer.engine import CpuReading, EngineInput
from balancer.engine.context import Context, build_context
from balancer.engine.filters import Placement
from balancer.engine.views import Resource
from balancer.model import (
    ClusterSnapshot,
    Guest,
    GuestType,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)

GIB = 1024**3
FULL = 100  # samples: comfortably above any ema_min_samples


def node(name: str, cpu: float = 0.2, maxcpu: int = 32, mem_gib: float = 64,
         maxmem_gib: float = 256, online: bool = True, hastate: str | None = None) -> Node:
    return Node(name=name, online=online, cpu=cpu, maxcpu=maxcpu, mem=int(mem_gib * GIB),
                maxmem=int(maxmem_gib * GIB), hastate=hastate)


def vm(vmid: int, node: str = "pve1", cpu: float = 0.5, maxcpu: int = 4, mem_gib: float = 4,
       maxmem_gib: float | None = None, memhost_gib: float | None = None,
       status: str = "running", tags: Iterable[str] = (), lock: str | None = None,
       template: bool = False, hastate: str | None = None,
       type: GuestType = GuestType.QEMU, name: str | None = None) -> Guest:
    return Guest(
        vmid=vmid, name=name or f"vm{vmid}", type=type, node=node, status=status, cpu=cpu,
        maxcpu=maxcpu, mem=int(mem_gib * GIB),
        maxmem=int((maxmem_gib if maxmem_gib is not None else mem_gib) * GIB),
        memhost=None if memhost_gib is None else int(memhost_gib * GIB),
        template=template, tags=frozenset(tags), lock=lock, hastate=hastate,
    )


def ct(vmid: int, **kwargs: Any) -> Guest:
    return vm(vmid, type=GuestType.LXC, **kwargs)


def config(**overrides: Any) -> BalancingConfig:
    """Defaults as shipped; tuples for list-valued keys may be given as lists."""
    fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in overrides.items()}
    return replace(BalancingConfig(), **fixed)


def node_affinity(name: str, *vmids: int, nodes: tuple[str, ...] = ("pve1",),
                  strict: bool = False) -> NodeAffinityRule:
    return NodeAffinityRule(name=name, vmids=frozenset(vmids), nodes=nodes, strict=strict)


def resource_affinity(name: str, *vmids: int, positive: bool) -> ResourceAffinityRule:
    return ResourceAffinityRule(name=name, vmids=frozenset(vmids), positive=positive)


def snapshot(nodes: Iterable[Node], guests: Iterable[Guest] = (), **kwargs: Any
             ) -> ClusterSnapshot:
    return ClusterSnapshot(nodes=tuple(nodes), guests=tuple(guests), **kwargs)


def steady(nodes: Iterable[Node], samples: int = FULL) -> dict[str, CpuReading]:
    """An EMA per online node equal to its current CPU, with a full window of samples."""
    return {n.name: CpuReading(n.cpu, samples) for n in nodes if n.online}


def engine_input(snap: ClusterSnapshot, cpu: Mapping[str, CpuReading] | None = None,
                 blocked: Mapping[int, str] | None = None,
                 cfg: BalancingConfig | None = None, seed: int = 0,
                 refused_targets: Mapping[int, Mapping[str, str]] | None = None,
                 proactive_held: Mapping[str, float] | None = None,
                 ) -> EngineInput:
    return EngineInput(snapshot=snap, cpu=steady(snap.nodes) if cpu is None else cpu,
                       blocked=blocked or {}, config=cfg or config(), seed=seed,
                       refused_targets=refused_targets or {}, proactive_held=proactive_held)


def context(snap: ClusterSnapshot, cpu: Mapping[str, CpuReading] | None = None,
            blocked: Mapping[int, str] | None = None,
            cfg: BalancingConfig | None = None,
            refused_targets: Mapping[int, Mapping[str, str]] | None = None) -> Context:
    """The per-decision context, for calling checks and filters directly."""
    return build_context(engine_input(snap, cpu, blocked, cfg,
                                      refused_targets=refused_targets))


def placement(ctx: Context, vmid: int, target: str,
              resource: Resource = Resource.CPU) -> Placement:
    """Guest `vmid` moving from its node to `target`, as the pair filters see it."""
    guest = next(g for g in ctx.snapshot.guests if g.vmid == vmid)
    source, dest = ctx.views[guest.node], ctx.views[target]
    return Placement(guest, source, dest, dest.with_guest(guest), resource)
