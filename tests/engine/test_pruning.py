"""The pruning (issue 16): a guest is skipped without pair checks only when no open target
has room for it in threads and bytes on the same node; the skip is never wrong."""

from __future__ import annotations

from balancer.engine import Trigger, decide
from balancer.engine.pipeline import Pipeline

from .builders import GIB, context, engine_input, node, snapshot, vm


def split_room() -> list:
    """pve2 has CPU room but its memory is full; pve3 has memory room but its CPU is at the
    limit. The roomiest CPU and the roomiest memory are on different nodes."""
    return [node("pve1", cpu=0.95, maxcpu=32), node("pve2", cpu=0.2, mem_gib=190),
            node("pve3", cpu=0.74, mem_gib=60)]


def test_a_guest_that_fits_on_no_single_node_is_pruned_and_the_prune_is_right() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=8, mem_gib=8)]
    ctx = context(snapshot(split_room(), guests))
    pipe = Pipeline(ctx)
    targets = pipe.targets(ctx.views["pve1"], Trigger.CPU)
    assert max(p[0] for p in targets.frontier) >= 8 and max(p[1] for p in targets.frontier) \
        >= 8 * GIB, "each measure alone has room somewhere"
    assert not targets.may_fit(guests[1]), "but no node has room in both"
    verdict = pipe.place(guests[1], ctx.views["pve1"], Trigger.CPU)
    assert verdict.deferred and verdict.target is None
    assert verdict.valid_targets == 0, "reading the verdicts agrees"
    assert {t.rejection.rule for t in verdict.targets if t.rejection} == {
        "memory_headroom", "cpu_headroom"}
    assert decide(engine_input(snapshot(split_room(), guests))).move is None


def test_a_guest_with_room_on_one_node_is_not_pruned() -> None:
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=0.2, maxcpu=4, mem_gib=4),
              vm(103, cpu=1.0, maxcpu=6, mem_gib=2)]
    nodes = [node("pve1", cpu=0.95, maxcpu=32), node("pve2", cpu=0.2, mem_gib=150),
             node("pve3", cpu=0.74, mem_gib=60)]
    decision = decide(engine_input(snapshot(nodes, guests)))
    assert decision.move is not None and decision.move.reason is Trigger.CPU
    assert decision.move.target == "pve2"
