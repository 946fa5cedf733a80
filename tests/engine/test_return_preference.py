"""Ranking: a target the VM left within `return_window_seconds` ranks after every target it
did not just leave, and stays valid (the churn benchmark's ping-pong: a VM moved off a node
in one load wave was sent back when the waves turned)."""

from __future__ import annotations

import dataclasses

from balancer.engine import Decision, Rule, decide

from .builders import config, engine_input, node, snapshot, vm

NOW = 1_800_000_000.0


def run(left: dict[int, dict[str, float]], *, cool: tuple[float, ...] = (0.1, 0.3),
        window: float = 3600.0) -> Decision:
    """pve1 hot; pve2 (the coolest, the usual winner) and pve3 cool. VM 102 is the one that
    moves (101 is the busiest and stays)."""
    nodes = [node("pve1", cpu=0.9)] + [node(f"pve{i}", cpu=c) for i, c in enumerate(cool, 2)]
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(102, cpu=1.0, maxcpu=4, mem_gib=8)]
    inp = engine_input(snapshot(nodes, guests, taken_at=NOW),
                       cfg=config(return_window_seconds=window))
    return decide(dataclasses.replace(inp, left_recently=left))


def chosen(decision: Decision) -> str:
    assert decision.move is not None, decision.explanation
    return decision.move.target


def test_without_history_the_least_loaded_target_wins() -> None:
    assert chosen(run({})) == "pve2"


def test_a_node_the_vm_just_left_ranks_after_one_it_did_not() -> None:
    decision = run({102: {"pve2": NOW - 900}})
    assert chosen(decision) == "pve3"
    (verdict,) = [c for c in decision.candidates if c.vmid == 102]
    (demoted,) = [t for t in verdict.targets if t.demoted is not None]
    assert demoted.node == "pve2" and demoted.ok  # ranked last, not rejected
    assert demoted.demoted is not None and demoted.demoted.rule is Rule.RECENTLY_LEFT
    assert (demoted.demoted.observed, demoted.demoted.limit) == (900, 3600)
    assert "ranked last: recently_left: vm 102 left pve2 15 min ago" in verdict.summary()
    assert decision.rejections_by_rule()["targets"]["recently_left"]["count"] == 1


def test_it_still_goes_back_when_that_is_the_only_valid_target() -> None:
    # pve3 at 0.7: 4 more cores (0.125 of 32 threads) put it above cpu_max - margin.
    decision = run({102: {"pve2": NOW - 900}}, cool=(0.1, 0.7))
    assert chosen(decision) == "pve2"
    (verdict,) = [c for c in decision.candidates if c.vmid == 102]
    assert "ranked last" not in verdict.summary()  # nothing was passed over for it
    assert "goes back: recently_left: vm 102 left pve2 15 min ago" in verdict.summary()
    assert "recently_left" not in decision.rejections_by_rule()["targets"]


def test_departures_outside_the_window_and_other_vms_do_not_count() -> None:
    assert chosen(run({102: {"pve2": NOW - 3601}})) == "pve2"
    assert chosen(run({101: {"pve2": NOW - 60}})) == "pve2"


def test_a_window_of_zero_turns_the_preference_off() -> None:
    assert chosen(run({102: {"pve2": NOW - 60}}, window=0)) == "pve2"


def test_every_node_it_left_in_the_window_ranks_last() -> None:
    decision = run({102: {"pve2": NOW - 1800, "pve3": NOW - 60}}, cool=(0.1, 0.3, 0.5))
    assert chosen(decision) == "pve4"
    # Among the demoted ones, the usual order holds.
    assert chosen(run({102: {"pve2": NOW - 1800, "pve3": NOW - 60}})) == "pve2"


# --- candidates: a VM moved within the window is tried after the ones that were not -------


def cpu_candidates(left: dict[int, dict[str, float]]) -> Decision:
    """pve1 hot; 102 and 103 each relieve it alone, 102 with less memory (the usual pick);
    104 relieves it too little."""
    nodes = [node("pve1", cpu=0.9), node("pve2", cpu=0.1), node("pve3", cpu=0.1)]
    guests = [vm(101, cpu=1.0, maxcpu=12), vm(102, cpu=1.0, maxcpu=4, mem_gib=8),
              vm(103, cpu=1.0, maxcpu=4, mem_gib=16), vm(104, cpu=1.0, maxcpu=1, mem_gib=1)]
    inp = engine_input(snapshot(nodes, guests, taken_at=NOW), cfg=config(safety_margin=0.0))
    return decide(dataclasses.replace(inp, left_recently=left))


def moved(decision: Decision) -> int:
    assert decision.move is not None, decision.explanation
    return decision.move.vmid


def test_cpu_prefers_a_vm_that_has_not_just_moved_among_equally_good_moves() -> None:
    assert moved(cpu_candidates({})) == 102
    assert moved(cpu_candidates({102: {"pve3": NOW - 900}})) == 103


def test_cpu_does_not_trade_a_sufficient_move_for_an_insufficient_one() -> None:
    """104 has not moved, but moving it does not relieve pve1 enough: 102 still goes."""
    assert moved(cpu_candidates({102: {"pve3": NOW - 900}, 103: {"pve2": NOW - 60}})) == 102


def test_cpu_candidate_preference_ends_with_the_window() -> None:
    assert moved(cpu_candidates({102: {"pve3": NOW - 3601}})) == 102


def memory_candidates(left: dict[int, dict[str, float]], seed: int) -> Decision:
    """pve1 above memory_max; each of its four 16 GiB VMs relieves it alone."""
    nodes = [node("pve1", mem_gib=56, maxmem_gib=64), node("pve2", mem_gib=8, maxmem_gib=64),
             node("pve3", mem_gib=8, maxmem_gib=64)]
    guests = [vm(v, cpu=0.1, mem_gib=12) for v in (101, 102, 103, 104)]
    inp = engine_input(snapshot(nodes, guests, taken_at=NOW), seed=seed)
    return decide(dataclasses.replace(inp, left_recently=left))


def test_memory_draws_among_the_vms_that_have_not_just_moved() -> None:
    drawn = {moved(memory_candidates({}, seed)) for seed in range(40)}
    assert len(drawn) > 1, "the draw is random"
    recent = {v: {"pve2": NOW - 600} for v in drawn if v != 104}
    assert {moved(memory_candidates(recent, seed)) for seed in range(40)} == {104}


def test_cpu_never_trades_a_big_relief_for_a_tiny_one() -> None:
    """No move leaves headroom here (pve1 at 0.99): the biggest relief goes first, moved
    recently or not; a VM that moved only loses ties within a point of the node's threads."""
    nodes = [node("pve1", cpu=0.99), node("pve2", cpu=0.1), node("pve3", cpu=0.1)]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=4, mem_gib=8),
              vm(103, cpu=0.5, maxcpu=1, mem_gib=1)]
    inp = engine_input(snapshot(nodes, guests, taken_at=NOW), cfg=config(safety_margin=0.0))
    assert moved(decide(inp)) == 102
    assert moved(decide(dataclasses.replace(inp, left_recently={102: {"pve3": NOW - 3000}}))) == 102


def test_cpu_prefers_the_unmoved_vm_among_reliefs_within_a_point() -> None:
    nodes = [node("pve1", cpu=0.99), node("pve2", cpu=0.1), node("pve3", cpu=0.1)]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=0.81, maxcpu=4, mem_gib=8),
              vm(103, cpu=0.8, maxcpu=4, mem_gib=8)]
    inp = engine_input(snapshot(nodes, guests, taken_at=NOW), cfg=config(safety_margin=0.0))
    assert moved(decide(inp)) == 102  # a hair more relief
    assert moved(decide(dataclasses.replace(inp, left_recently={102: {"pve3": NOW - 3000}}))) == 103
