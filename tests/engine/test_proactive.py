"""Rule 3, proactive: only in a calm cluster, shed memory from a node far above the mean."""

import pytest

from balancer.config import BalancingConfig
from balancer.engine import CpuReading, Decision, Rule, Trigger, above_proactive, decide
from balancer.model import Guest, Node

from .builders import config, engine_input, node, snapshot, vm


def lopsided() -> tuple[list[Node], list[Guest]]:
    """Mean memory 0.40; pve1 at 0.70 > 0.40 + 0.20, nothing above 0.80."""
    nodes = [node("pve1", mem_gib=179.2, maxmem_gib=256), node("pve2", mem_gib=76.8),
             node("pve3", mem_gib=51.2), node("pve4", mem_gib=102.4)]
    guests = [vm(100 + i, mem_gib=8) for i in range(6)]
    return nodes, guests


def run(nodes: list[Node], guests: list[Guest], cpu: dict[str, CpuReading] | None = None,
        cfg: BalancingConfig | None = None) -> Decision:
    return decide(engine_input(snapshot(nodes, guests), cpu=cpu, cfg=cfg))


def test_proactive_moves_off_the_node_above_mean_plus_margin() -> None:
    nodes, guests = lopsided()
    decision = run(nodes, guests)
    assert decision.move is not None
    assert (decision.move.reason, decision.move.source, decision.move.target) == (
        Trigger.PROACTIVE, "pve1", "pve3")
    assert decision.fired[0].limit == pytest.approx(0.60)
    assert any("mean memory 0.40 + proactive_margin 0.20 = 0.60" in line
               for line in decision.explanation)


def test_proactive_threshold_follows_the_margin() -> None:
    nodes, guests = lopsided()
    decision = run(nodes, guests, cfg=config(proactive_margin=0.35))
    assert decision.move is None
    assert "proactive: no node above mean memory 0.40 + proactive_margin 0.35 = 0.75 " \
           "(highest pve1 0.70)" in decision.explanation[0]


def test_no_proactive_move_while_a_node_is_above_memory_max() -> None:
    nodes, guests = lopsided()
    nodes[3] = node("pve4", mem_gib=220, maxmem_gib=256)  # above 0.80, but nothing to move
    decision = run(nodes, guests)
    assert decision.move is None
    assert "proactive: skipped, pve4 memory 0.86 above memory_max 0.80" in decision.explanation[0]


def test_no_proactive_move_while_a_node_cpu_ema_is_above_cpu_max() -> None:
    nodes, guests = lopsided()
    readings = {n.name: CpuReading(0.2, 50) for n in nodes}
    readings["pve2"] = CpuReading(0.85, 2)  # even a young EMA above cpu_max keeps us calm
    decision = run(nodes, guests, cpu=readings)
    assert decision.move is None
    assert "proactive: skipped, pve2 cpu 0.85 above cpu_max 0.80" in decision.explanation[0]


def test_balanced_cluster_decides_nothing_and_says_why() -> None:
    nodes = [node(f"pve{i}", cpu=0.3, mem_gib=100) for i in range(1, 5)]
    guests = [vm(100 + i, node=f"pve{1 + i % 4}") for i in range(8)]
    decision = run(nodes, guests)
    assert decision.move is None and decision.action == "none"
    assert decision.explanation[0] == (
        "no migration: cpu: no node above cpu_max 0.80 (hottest pve1 EMA 0.30); "
        "memory: no node above memory_max 0.80 (highest pve1 0.39); "
        "proactive: no node above mean memory 0.39 + proactive_margin 0.20 = 0.59 "
        "(highest pve1 0.39)")


def test_proactive_respects_the_midpoint() -> None:
    # pve1 0.70, pve2 0.30 (mean 0.50 + 0.15 margin): a 64 GiB VM would land pve2 at 0.55 > 0.50.
    nodes = [node("pve1", mem_gib=179.2, maxmem_gib=256), node("pve2", mem_gib=76.8)]
    decision = run(nodes, [vm(101, mem_gib=60, maxmem_gib=64)],
                   cfg=config(proactive_margin=0.15))
    assert decision.move is None
    (verdict,) = decision.candidates
    assert verdict.summary() == "vm 101: 0/1 targets valid: 1 midpoint"


# --- issue 15: a voluntary move needs a sustained reason ------------------------------------

def test_a_node_above_for_less_than_the_hold_sheds_nothing_and_says_how_long() -> None:
    nodes, guests = lopsided()
    inp = engine_input(snapshot(nodes, guests), cfg=config(proactive_hold_seconds=60),
                       proactive_held={"pve1": 15.0})
    decision = decide(inp)
    assert decision.move is None
    assert "proactive: pve1 above 0.60 for 15 of 60 s" in decision.explanation[0]
    (held_back,) = decision.skipped_sources
    assert (held_back.rule, held_back.observed, held_back.limit) == (
        Rule.PROACTIVE_HOLD, 15.0, 60.0)


@pytest.mark.parametrize("held", [60.0, 61.5])
def test_once_the_hold_is_reached_the_node_sheds(held: float) -> None:
    nodes, guests = lopsided()
    decision = decide(engine_input(snapshot(nodes, guests),
                                   cfg=config(proactive_hold_seconds=60),
                                   proactive_held={"pve1": held}))
    assert decision.move is not None and decision.move.reason is Trigger.PROACTIVE


def test_the_hold_defaults_to_the_ema_window() -> None:
    assert config().proactive_hold == config().ema_window_seconds == 60
    assert config(ema_window_seconds=120).proactive_hold == 120
    assert config(proactive_hold_seconds=0).proactive_hold == 0


def test_the_mandatory_memory_trigger_does_not_wait() -> None:
    """Memory above memory_max hurts now: no hold, whatever the proactive state says."""
    nodes = [node("pve1", mem_gib=230, maxmem_gib=256), node("pve2", mem_gib=64)]
    guests = [vm(100 + i, mem_gib=16) for i in range(6)]
    decision = decide(engine_input(snapshot(nodes, guests), proactive_held={}))
    assert decision.move is not None and decision.move.reason is Trigger.MEMORY


def test_proactive_off_leaves_only_mandatory_moves() -> None:
    nodes, guests = lopsided()
    decision = decide(engine_input(snapshot(nodes, guests), cfg=config(proactive=False),
                                   proactive_held={"pve1": 3600.0}))
    assert decision.move is None
    assert "proactive: off (balancing.proactive: false)" in decision.explanation[0]


def test_above_proactive_names_the_nodes_the_runtime_must_time() -> None:
    nodes, guests = lopsided()
    assert above_proactive(snapshot(nodes, guests), config()) == ["pve1"]
    assert above_proactive(snapshot(nodes, guests), config(proactive_margin=0.35)) == []


def test_a_relief_the_maxmem_midpoint_refused_now_finishes() -> None:
    """Issue 15: the VMs on pve1 use 16/8/8 GiB of 64 GiB each. Charged at their maxmem, every
    move would end above the midpoint (0.35 + 0.25 = 0.60 > 0.505) and pve1 stayed above the
    proactive threshold for good; charged at what they use, one move relieves it."""
    nodes = [node("pve1", mem_gib=0.66 * 256), *(node(f"pve{i}", mem_gib=0.35 * 256)
                                                 for i in (2, 3, 4))]
    guests = [vm(100, mem_gib=16, maxmem_gib=64), vm(101, mem_gib=8, maxmem_gib=64),
              vm(102, mem_gib=8, maxmem_gib=64)]
    decision = run(nodes, guests)
    move = decision.move
    assert move is not None and move.reason is Trigger.PROACTIVE and move.vmid == 100
    threshold = decision.fired[0].limit
    assert move.source_after.memory < threshold, "relieved in one move"
    midpoint = (move.source_before.memory + move.target_before.memory) / 2
    assert move.target_before.memory + 64 / 256 > midpoint, "the old measure refused it"
    assert move.target_after.memory < 0.75, "the headroom still charges maxmem"
