from balancer.engine import Rule, decide
from balancer.engine.filters import target_allowed_by_pve

from .builders import context, engine_input, node, placement, snapshot, vm

NODES = [node("pve1", cpu=0.9, maxcpu=16), node("pve2", cpu=0.3), node("pve3", cpu=0.1)]
GUESTS = [vm(100, cpu=1.0, maxcpu=8), vm(101, cpu=0.9, maxcpu=4)]
REFUSED = {101: {"pve3": "target pve3 not allowed (storage not available there: nfs-a)"}}


def test_only_the_refused_pair_is_rejected() -> None:
    ctx = context(snapshot(NODES, GUESTS), refused_targets=REFUSED)
    rejection = target_allowed_by_pve(placement(ctx, 101, "pve3"), ctx)
    assert rejection is not None and rejection.rule == Rule.PVE_REFUSED
    assert "nfs-a" in rejection.message
    assert target_allowed_by_pve(placement(ctx, 101, "pve2"), ctx) is None
    assert target_allowed_by_pve(placement(ctx, 100, "pve3"), ctx) is None


def test_the_engine_moves_to_the_next_best_target() -> None:
    free = decide(engine_input(snapshot(NODES, GUESTS)))
    refused = decide(engine_input(snapshot(NODES, GUESTS), refused_targets=REFUSED))
    assert free.move is not None and (free.move.vmid, free.move.target) == (101, "pve3")
    assert refused.move is not None and (refused.move.vmid, refused.move.target) == (101, "pve2")
