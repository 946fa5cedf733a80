"""Properties over random clusters: whatever the engine picks is a move a human would allow.

Every invariant is re-derived here from the model and config, not from engine internals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from balancer.config import BalancingConfig
from balancer.engine import CpuReading, Decision, EngineInput, Trigger, decide
from balancer.model import (
    HA_BUSY_STATES,
    ClusterSnapshot,
    Guest,
    GuestType,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)

from .builders import GIB

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TAGS = ("pve-balancer-ignore", "plb_ignore_vm", "plb_affinity_web", "plb_anti_affinity_db",
        "plb_anti_affinity_web", "plb_pin_pve0", "plb_pin_pve1", "prod")


@dataclass(frozen=True)
class World:
    inp: EngineInput

    @property
    def snap(self) -> ClusterSnapshot:
        return self.inp.snapshot

    @property
    def cfg(self) -> BalancingConfig:
        return self.inp.config


def _node(rng: random.Random, i: int, calm: bool) -> Node:
    """`calm` nodes stay under any threshold, which is when proactive moves can happen."""
    maxmem = rng.choice((64, 128, 256, 512)) * GIB
    top = 0.5 if calm else 1.0
    return Node(name=f"pve{i}", online=rng.random() > 0.1, cpu=rng.uniform(0, top * 0.9),
                maxcpu=rng.choice((8, 16, 32, 64, 128)), mem=int(maxmem * rng.uniform(0, top)),
                maxmem=maxmem,
                hastate=rng.choice((None, None, None, "online", "maintenance", "fence", "gone")))


def _guest(rng: random.Random, vmid: int, nodes: list[Node]) -> Guest:
    maxmem = rng.choice((1, 2, 4, 8, 16, 32, 64)) * GIB
    mem = int(maxmem * rng.random())
    return Guest(
        vmid=vmid, name=f"vm{vmid}", node=rng.choice(nodes).name,
        type=GuestType.LXC if rng.random() < 0.1 else GuestType.QEMU,
        status=rng.choice(("running",) * 8 + ("stopped", "unknown", "paused")),
        cpu=rng.random() * 1.5, maxcpu=rng.choice((1, 2, 4, 8, 16)), mem=mem, maxmem=maxmem,
        memhost=None if rng.random() < 0.5 else int(mem * 1.1),
        template=rng.random() < 0.05, lock="backup" if rng.random() < 0.05 else None,
        tags=frozenset(t for t in TAGS if rng.random() < (0.2 if "anti" in t else 0.05)),
        hastate=rng.choice((None,) * 6 + ("started", "migrate", "request_stop")),
    )


def _rules(rng: random.Random, vmids: list[int]
           ) -> tuple[tuple[NodeAffinityRule, ...], tuple[ResourceAffinityRule, ...]]:
    def pick(k: int) -> frozenset[int]:
        return frozenset(rng.sample(vmids, min(k, len(vmids))))

    node_rules = tuple(NodeAffinityRule(f"na{i}", pick(3), ("pve0",), rng.random() < 0.5)
                       for i in range(rng.randint(0, 2)))
    res_rules = tuple(ResourceAffinityRule(f"ra{i}", pick(rng.randint(2, 30)), rng.random() < 0.2)
                      for i in range(rng.randint(0, 6)))
    return node_rules, res_rules


def _config(rng: random.Random, names: list[str]) -> BalancingConfig:
    margin = rng.choice((0.0, 0.05, 0.1, 0.15))
    return BalancingConfig(
        cpu_max=rng.uniform(0.5, 0.9), memory_max=rng.uniform(0.5, 0.9), safety_margin=margin,
        proactive_margin=rng.uniform(0.05, 0.5),
        exclude_nodes=tuple(n for n in names if rng.random() < 0.1),
        proxlb_tags=rng.random() < 0.8, leave_ha_to_pve=rng.random() < 0.7,
    )


@st.composite
def worlds(draw: st.DrawFn, max_nodes: int = 40, max_guests: int = 400) -> World:
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))  # cheap: one draw builds the world
    calm = draw(st.booleans())
    nodes = [_node(rng, i, calm) for i in range(draw(st.integers(1, max_nodes)))]
    vmids = list(range(100, 100 + draw(st.integers(0, max_guests))))
    event(f"{len(nodes) // 10 * 10}+ nodes, {len(vmids) // 100 * 100}+ guests")
    guests = [_guest(rng, vmid, nodes) for vmid in vmids]
    node_rules, res_rules = _rules(rng, vmids)
    readings = {n.name: CpuReading(min(1.0, max(0.0, n.cpu + rng.uniform(-0.1, 0.1))),
                                   rng.randint(0, 20), rng.random() < 0.1)
                for n in nodes if rng.random() < 0.9}
    snap = ClusterSnapshot(nodes=tuple(nodes), guests=tuple(guests), node_affinity=node_rules,
                           resource_affinity=res_rules, ha_auto_rebalance=rng.random() < 0.3)
    blocked = {v: "cooldown" for v in vmids if rng.random() < 0.05}
    names = [n.name for n in nodes]
    return World(EngineInput(snap, readings, blocked, _config(rng, names), rng.randint(0, 99)))


# --- independent re-derivations -------------------------------------------------------------

def node_of(w: World, name: str) -> Node:
    found = w.snap.node(name)
    assert found is not None
    return found


def node_cpu(w: World, name: str) -> float:
    reading = w.inp.cpu.get(name)
    return reading.value if reading else node_of(w, name).cpu


def plb_tags(w: World, guest: Guest, prefix: str) -> set[str]:
    if not w.cfg.proxlb_tags:
        return set()
    return {t.lower() for t in guest.tags if t.lower().startswith(prefix)}


def busiest(w: World, node: str) -> int:
    vms = [g for g in w.snap.guests if g.node == node and g.type is GuestType.QEMU]
    return min(vms, key=lambda g: (-g.cpu * g.maxcpu, -g.host_memory, g.vmid)).vmid


def moved_guest(w: World, d: Decision) -> Guest:
    assert d.move is not None
    guest = w.snap.guest(d.move.vmid)
    assert guest is not None and guest.node == d.move.source
    return guest


def assert_guest_may_move(w: World, d: Decision) -> None:
    g = moved_guest(w, d)
    assert g.type is GuestType.QEMU and g.status == "running"
    assert not g.template and g.lock is None
    assert not {t.lower() for t in g.tags} & {t.lower() for t in w.cfg.exclude_tags}
    assert g.vmid not in w.inp.blocked
    assert all(g.vmid not in r.vmids for r in w.snap.node_affinity)
    assert all(g.vmid not in r.vmids for r in w.snap.resource_affinity if r.positive)
    assert not plb_tags(w, g, "plb_ignore") and not plb_tags(w, g, "plb_affinity_")
    assert g.hastate not in HA_BUSY_STATES
    assert not (g.ha_managed and w.snap.ha_auto_rebalance and w.cfg.leave_ha_to_pve)


def assert_nodes_allowed(w: World, d: Decision) -> None:
    assert d.move is not None
    source, target = node_of(w, d.move.source), node_of(w, d.move.target)
    assert source.name != target.name
    assert target.online and not target.in_maintenance and not source.in_maintenance
    assert target.name not in w.cfg.exclude_nodes and source.name not in w.cfg.exclude_nodes
    pins = {t[len("plb_pin_"):] for t in plb_tags(w, moved_guest(w, d), "plb_pin_")}
    assert not pins or target.name in pins


def assert_no_anti_affinity_broken(w: World, d: Decision) -> None:
    g = moved_guest(w, d)
    assert d.move is not None
    on_target = {x.vmid: x for x in w.snap.guests if x.node == d.move.target}
    for rule in w.snap.resource_affinity:
        if not rule.positive and g.vmid in rule.vmids:
            assert not (rule.vmids - {g.vmid}) & on_target.keys()
    for tag in plb_tags(w, g, "plb_anti_affinity_"):
        assert all(tag not in plb_tags(w, x, tag) for x in on_target.values())


def assert_target_stays_below_limits_and_midpoint(w: World, d: Decision) -> None:
    g, move = moved_guest(w, d), d.move
    assert move is not None
    source, target = node_of(w, move.source), node_of(w, move.target)
    cpu_after = node_cpu(w, target.name) + g.cpu * g.maxcpu / target.maxcpu
    mem_after = (target.mem + g.maxmem) / target.maxmem
    assert cpu_after < w.cfg.cpu_max - w.cfg.safety_margin
    assert mem_after < w.cfg.memory_max - w.cfg.safety_margin
    if move.reason is Trigger.CPU:
        midpoint = (node_cpu(w, source.name) + node_cpu(w, target.name)) / 2
        assert cpu_after <= midpoint + 1e-9
    elif move.reason is not Trigger.RULE:  # a repair is not a balancing move
        used_after = (target.mem + g.host_memory) / target.maxmem  # the midpoint's measure
        assert used_after <= (source.memory_ratio + target.memory_ratio) / 2 + 1e-9


def assert_trigger_really_fired(w: World, d: Decision) -> None:
    g, move, cfg = moved_guest(w, d), d.move, w.cfg
    assert move is not None
    if move.reason is Trigger.CPU:
        reading = w.inp.cpu[move.source]
        assert reading.value > cfg.cpu_max
        assert reading.from_measurement or reading.samples >= cfg.ema_min_samples
        assert g.vmid != busiest(w, move.source)
    elif move.reason is Trigger.MEMORY:
        assert node_of(w, move.source).memory_ratio > cfg.memory_max
    elif move.reason is Trigger.RULE:
        assert breaks_a_rule(w, g), f"vm {g.vmid} was repaired but broke no rule"
    else:
        online = [n for n in w.snap.nodes if n.online]
        assert all(node_cpu(w, n.name) <= cfg.cpu_max for n in online)
        assert all(n.memory_ratio <= cfg.memory_max for n in online)


def breaks_a_rule(w: World, g: Guest) -> bool:
    """`g` runs outside its plb_pin_ nodes, or shares its node with a member of one of its
    plb_anti_affinity_ groups."""
    pins = {t.removeprefix("plb_pin_") for t in plb_tags(w, g, "plb_pin_")}
    if pins and g.node.lower() not in pins:
        return True
    here = [x for x in w.snap.guests if x.node == g.node and x.vmid != g.vmid]
    return any(tag in plb_tags(w, x, tag) for tag in plb_tags(w, g, "plb_anti_affinity_")
               for x in here)


def assert_verdicts_consistent(w: World, d: Decision) -> None:
    """A candidate without a target really has none (this also checks the pruning)."""
    evaluated = [c for c in d.candidates if c.eligible][:30]
    others = len(w.snap.nodes) - 1
    for verdict in evaluated:
        assert len(verdict.targets) == others
        if verdict.target is None:
            assert verdict.valid_targets == 0
        else:
            assert any(t.node == verdict.target and t.ok for t in verdict.targets)


@SETTINGS
@given(worlds())
def test_any_move_is_allowed_by_every_rule(w: World) -> None:
    d = decide(w.inp)
    event(f"{d.action} {d.move.reason if d.move else ''}")
    assert_verdicts_consistent(w, d)
    assert d.explanation and d.explanation[0].startswith(
        "migrate" if d.move else "no migration")
    if d.move is None:
        return
    assert_guest_may_move(w, d)
    assert_nodes_allowed(w, d)
    assert_no_anti_affinity_broken(w, d)
    assert_target_stays_below_limits_and_midpoint(w, d)
    assert_trigger_really_fired(w, d)


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_decisions_are_deterministic_for_a_fixed_seed(w: World) -> None:
    first, second = decide(w.inp), decide(w.inp)
    assert first.to_dict() == second.to_dict()
    assert [c.vmid for c in first.candidates] == [c.vmid for c in second.candidates]


@st.composite
def calm_worlds(draw: st.DrawFn) -> World:
    """All nodes under both thresholds, memory within the proactive margin of the mean."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    w = draw(worlds())
    cfg = w.cfg
    level = rng.uniform(0.05, cfg.memory_max - 0.01)
    spread = min(cfg.proactive_margin, cfg.memory_max - level) * 0.9
    nodes = tuple(Node(n.name, n.online, rng.uniform(0, cfg.cpu_max), n.maxcpu,
                       int(n.maxmem * (level + rng.uniform(0, spread))), n.maxmem, n.hastate)
                  for n in w.snap.nodes)
    readings = {n.name: CpuReading(n.cpu, 50) for n in nodes}
    snap = ClusterSnapshot(nodes=nodes, guests=w.snap.guests, node_affinity=w.snap.node_affinity,
                           resource_affinity=w.snap.resource_affinity)
    return World(EngineInput(snap, readings, w.inp.blocked, cfg, w.inp.seed))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calm_worlds())
def test_a_calm_balanced_cluster_decides_nothing(w: World) -> None:
    d = decide(w.inp)
    assert d.move is None or d.move.reason is Trigger.RULE, "only a broken rule moves a VM"
    assert all(f.trigger is Trigger.RULE for f in d.fired)
    assert d.explanation[0].startswith("no migration: " if d.move is None else "migrate ")
