"""Rule 1, sustained CPU: busiest VM stays, least-memory sufficient move, else most relief."""

import dataclasses

import pytest

from balancer.config import BalancingConfig
from balancer.engine import CpuReading, Decision, Rule, Trigger, decide
from balancer.model import Guest, Node, ResourceAffinityRule

from .builders import config, engine_input, node, resource_affinity, snapshot, steady, vm


def hot_cluster(ema: float = 0.9, targets: int = 2) -> list[Node]:
    """pve1 (32 threads) hot; pve2.. cool and roomy."""
    return [node("pve1", cpu=ema)] + [node(f"pve{i}", cpu=0.2) for i in range(2, 2 + targets)]


def run(nodes: list[Node], guests: list[Guest], *, cpu: dict[str, CpuReading] | None = None,
        cfg: BalancingConfig | None = None,
        rules: tuple[ResourceAffinityRule, ...] = ()) -> Decision:
    snap = snapshot(nodes, guests, resource_affinity=rules)
    return decide(engine_input(snap, cpu=cpu, cfg=cfg))


def verdict_rules(decision: Decision, vmid: int) -> list[str]:
    (found,) = [c for c in decision.candidates if c.vmid == vmid]
    return [r.rule for r in found.rejections]


def test_busiest_vm_is_never_moved_even_when_it_is_the_only_fit() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=0.0, maxcpu=4)]
    decision = run(hot_cluster(), guests)
    assert decision.move is None
    assert verdict_rules(decision, 101) == [Rule.BUSIEST]
    assert verdict_rules(decision, 102) == [Rule.NO_CPU_RELIEF]
    assert "cpu: no valid move off pve1" in decision.explanation[0]


def test_busiest_ties_go_to_more_memory_then_lower_vmid() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=4, mem_gib=8), vm(102, cpu=1.0, maxcpu=4, mem_gib=16),
              vm(103, cpu=1.0, maxcpu=4, mem_gib=16)]
    decision = run(hot_cluster(), guests)
    assert verdict_rules(decision, 102) == [Rule.BUSIEST]
    assert decision.move is not None and decision.move.vmid != 102


def test_prefers_the_sufficient_move_with_least_memory_then_lower_vmid() -> None:
    # pve1 EMA 0.90 on 32 threads: >= 3.2 cores must leave to reach cpu_max 0.80.
    guests = [vm(101, cpu=1.0, maxcpu=12),                 # busiest, stays
              vm(102, cpu=1.0, maxcpu=4, mem_gib=16),      # sufficient, more memory
              vm(103, cpu=1.0, maxcpu=4, mem_gib=8),       # sufficient, least memory
              vm(104, cpu=1.0, maxcpu=4, mem_gib=8),       # tie on memory, higher vmid
              vm(105, cpu=1.0, maxcpu=6, mem_gib=32),      # sufficient, most relief
              vm(106, cpu=1.0, maxcpu=1, mem_gib=1)]       # too small alone
    decision = run(hot_cluster(), guests, cfg=config(safety_margin=0.0))
    assert decision.move is not None
    assert (decision.move.vmid, decision.move.reason) == (103, Trigger.CPU)
    assert decision.move.source_after.cpu == pytest.approx(0.9 - 4 / 32)
    assert decision.move.cpu_share_source == pytest.approx(4 / 32)


def test_prefers_a_sufficient_move_that_leaves_headroom_under_cpu_max() -> None:
    # 4 cores leave pve1 at 0.775: under cpu_max 0.80 but not under 0.80 - 0.05, so the next
    # fluctuation would cost another migration; 6 cores leave it at 0.71 with room to spare.
    guests = [vm(101, cpu=1.0, maxcpu=12),                 # busiest, stays
              vm(103, cpu=1.0, maxcpu=4, mem_gib=8),       # just enough, least memory
              vm(105, cpu=1.0, maxcpu=6, mem_gib=32),      # enough with headroom
              vm(107, cpu=1.0, maxcpu=7, mem_gib=48)]      # headroom too, more memory
    decision = run(hot_cluster(), guests, cfg=config(safety_margin=0.05))
    assert decision.move is not None
    assert decision.move.vmid == 105
    assert decision.move.source_after.cpu == pytest.approx(0.9 - 6 / 32)


def test_sufficient_move_without_a_target_gives_way_to_the_next_sufficient() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(103, cpu=1.0, maxcpu=4, mem_gib=8),
              vm(104, cpu=1.0, maxcpu=4, mem_gib=12), vm(201, node="pve2"),
              vm(202, node="pve3")]
    apart = (resource_affinity("apart", 103, 201, 202, positive=False),)
    decision = run(hot_cluster(), guests, rules=apart)
    assert decision.move is not None and decision.move.vmid == 104
    (v103,) = [c for c in decision.candidates if c.vmid == 103]
    assert v103.summary() == "vm 103: 0/2 targets valid: 2 anti_affinity"


def test_without_a_sufficient_move_the_most_relief_with_a_target_wins() -> None:
    # EMA 0.99: 5.8 cores must leave; nothing but the busiest is that large.
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=4, mem_gib=64),
              vm(103, cpu=1.0, maxcpu=3, mem_gib=4), vm(104, cpu=1.0, maxcpu=2, mem_gib=2),
              vm(201, node="pve2"), vm(202, node="pve3")]
    decision = run(hot_cluster(ema=0.99), guests)
    assert decision.move is not None and decision.move.vmid == 102
    blocked = run(hot_cluster(ema=0.99), guests,
                  rules=(resource_affinity("apart", 102, 201, 202, positive=False),))
    assert blocked.move is not None and blocked.move.vmid == 103


def test_hottest_source_first_and_maintenance_source_skipped() -> None:
    guests = [vm(101, node="pve1", cpu=1.0, maxcpu=8), vm(102, node="pve1", cpu=1.0, maxcpu=4),
              vm(201, node="pve2", cpu=1.0, maxcpu=8), vm(202, node="pve2", cpu=1.0, maxcpu=4)]
    nodes = [node("pve1", cpu=0.85), node("pve2", cpu=0.95), node("pve3", cpu=0.1),
             node("pve4", cpu=0.1)]
    decision = run(nodes, guests)
    assert decision.move is not None and decision.move.source == "pve2"
    nodes[1] = node("pve2", cpu=0.95, hastate="maintenance")
    decision = run(nodes, guests)
    assert decision.move is not None and decision.move.source == "pve1"
    assert [r.rule for r in decision.skipped_sources] == [Rule.SOURCE_MAINTENANCE]


def test_excluded_source_is_not_touched() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    decision = run(hot_cluster(), guests, cfg=config(exclude_nodes=["pve1"]))
    assert decision.move is None
    assert [r.rule for r in decision.skipped_sources] == [Rule.SOURCE_EXCLUDED]


def test_cpu_trigger_waits_for_ema_min_samples() -> None:
    cfg = config(interval_seconds=5, ema_window_seconds=60)  # 12 samples, min 6
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    nodes = hot_cluster()
    young = {"pve1": CpuReading(0.9, 5), "pve2": CpuReading(0.2, 5), "pve3": CpuReading(0.2, 5)}
    decision = run(nodes, guests, cpu=young, cfg=cfg)
    assert decision.move is None
    assert [r.rule for r in decision.skipped_sources] == [Rule.EMA_WARMING_UP]
    assert any("5/6 samples" in line for line in decision.explanation)
    assert "cpu: pve1 above cpu_max, but the EMA is still warming up" in decision.explanation[0]
    ready = {**young, "pve1": CpuReading(0.9, 6)}
    assert run(nodes, guests, cpu=ready, cfg=cfg).move is not None


def test_a_one_off_measurement_is_used_and_said_so() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    readings = {"pve1": CpuReading(0.9, 1, from_measurement=True),
                "pve2": CpuReading(0.2, 1, from_measurement=True)}
    decision = run(hot_cluster(targets=1), guests, cpu=readings)
    assert decision.move is not None and decision.move.vmid == 102
    assert any("one-off measurement" in line for line in decision.explanation)
    assert decision.fired[0].note.startswith("from a one-off measurement")


def test_a_node_without_cpu_history_never_fires_the_cpu_trigger() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    nodes = hot_cluster()
    decision = run(nodes, guests, cpu={"pve2": CpuReading(0.2, 50)})
    assert decision.move is None
    assert any("no EMA history" in line for line in decision.explanation)


def test_source_cpu_uses_the_ema_not_the_instant_value() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    nodes = [node("pve1", cpu=0.99), node("pve2", cpu=0.2)]
    calm = {"pve1": CpuReading(0.7, 50), "pve2": CpuReading(0.2, 50)}
    decision = run(nodes, guests, cpu=calm)
    assert decision.move is None
    assert "no node above cpu_max 0.80 (hottest pve1 EMA 0.70)" in decision.explanation[0]


def test_least_utilised_target_wins_ties_by_memory_then_name() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=8), vm(102, cpu=1.0, maxcpu=4)]
    nodes = [node("pve1", cpu=0.9), node("pve2", cpu=0.3), node("pve3", cpu=0.2, mem_gib=100),
             node("pve4", cpu=0.2, mem_gib=90), node("pve5", cpu=0.2, mem_gib=90)]
    decision = run(nodes, guests)
    assert decision.move is not None and decision.move.target == "pve4"
    assert decision.move.target_after.cpu == pytest.approx(0.2 + 4 / 32)


# --- issue 15: weigh guests by what they keep using ------------------------------------------

def test_a_noise_peak_does_not_make_a_vm_look_like_enough_relief() -> None:
    """pve1 (16 threads) at 0.90. vm 101's last sample (0.9 of 4 cores) says moving it alone
    leaves 0.675, but it averages 0.3 (1.2 cores): moving it would leave 0.825 and cost a
    second move. vm 102 (0.7 of 4, steady) really relieves pve1, so it moves."""
    nodes = [node("pve1", cpu=0.9, maxcpu=16), node("pve2", cpu=0.2), node("pve3", cpu=0.2)]
    guests = [vm(100, cpu=1.0, maxcpu=8, mem_gib=32), vm(101, cpu=0.9, mem_gib=2),
              vm(102, cpu=0.7, mem_gib=8)]
    last_sample = decide(engine_input(snapshot(nodes, guests)))
    assert last_sample.move is not None and last_sample.move.vmid == 101
    averaged = decide(dataclasses.replace(engine_input(snapshot(nodes, guests)),
                                          guest_cpu={100: 1.0, 101: 0.3, 102: 0.7}))
    move = averaged.move
    assert move is not None and move.vmid == 102
    assert move.source_after.cpu == pytest.approx(0.9 - 2.8 / 16)
    assert move.cpu_share_source == pytest.approx(2.8 / 16), "the EMA shift uses it too"


def test_without_headroom_the_move_landing_lowest_under_cpu_max_wins() -> None:
    """No single move reaches 0.75 (cpu_max - margin). 3.5 cores would land pve1 at 0.791,
    a fluctuation away from another move; 4 cores land it at 0.775: that one, although it
    copies more memory."""
    guests = [vm(101, cpu=1.0, maxcpu=12),                   # busiest, stays
              vm(103, cpu=0.875, maxcpu=4, mem_gib=4),       # 3.5 cores: lands at 0.791
              vm(104, cpu=1.0, maxcpu=4, mem_gib=16)]        # 4 cores: lands at 0.775
    decision = run(hot_cluster(), guests, cfg=config(safety_margin=0.05))
    assert decision.move is not None and decision.move.vmid == 104
    assert decision.move.source_after.cpu == pytest.approx(0.9 - 4 / 32)


def test_when_every_other_node_is_closed_the_source_says_so_once() -> None:
    """All hot: no node can take anything, so the source's guests are not weighed one by one
    (issue 16: that was most of an all-hot cycle)."""
    nodes = [node("pve1", cpu=0.95), node("pve2", cpu=0.9), node("pve3", cpu=0.9)]
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(102), vm(103)]
    decision = run(nodes, guests)
    assert decision.move is None
    assert "cpu: source skipped: no_open_target: pve1 has no node to move to (2 closed: " \
           "2 cpu_headroom)" in decision.explanation
    assert [r.rule for r in decision.skipped_sources].count(Rule.NO_OPEN_TARGET) == 3
    assert decision.candidates == (), "no guest was weighed"


def _relieved_at(value: float, relieved: bool = True) -> dict[str, CpuReading]:
    nodes = hot_cluster(ema=value)
    return {**steady(nodes), "pve1": CpuReading(value, 20, relieved=relieved)}


@pytest.mark.parametrize("ema", [0.8001, 0.805, 0.81])
def test_a_relieved_node_within_the_hysteresis_band_is_settling_not_hot(ema: float) -> None:
    """The big benchmark's extra move: the relief left pve01 at 0.7998 on sustained loads and
    its EMA's noise read 0.8003. A node a move brought under cpu_max fires again only above
    cpu_max + cpu_hysteresis; the reason is data, and no move is made."""
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(103, cpu=1.0, maxcpu=4)]
    decision = run(hot_cluster(ema=ema), guests, cpu=_relieved_at(ema))
    assert decision.move is None
    [settling] = decision.skipped_sources
    assert (settling.rule, settling.subject, settling.limit) == (
        Rule.CPU_HYSTERESIS, "pve1", pytest.approx(0.81))
    assert "fires again above 0.81" in settling.message
    assert ("cpu: no node sustained above cpu_max 0.80 (pve1 settling within cpu_hysteresis "
            "0.01)") in decision.explanation


@pytest.mark.parametrize(("ema", "relieved", "hysteresis"), [
    (0.8101, True, 0.01),   # above the band: sustained, whatever came before
    (0.805, False, 0.01),   # no move relieved it: cpu_max is the line
    (0.805, True, 0.0),     # hysteresis off
])
def test_a_node_outside_the_hysteresis_fires_at_its_line(ema: float, relieved: bool,
                                                          hysteresis: float) -> None:
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(103, cpu=1.0, maxcpu=4)]
    decision = run(hot_cluster(ema=ema), guests, cpu=_relieved_at(ema, relieved),
                   cfg=config(cpu_hysteresis=hysteresis))
    assert decision.move is not None and decision.move.reason == Trigger.CPU
    assert not [r for r in decision.skipped_sources if r.rule == Rule.CPU_HYSTERESIS]
