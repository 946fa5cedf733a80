from balancer.engine import Rule
from balancer.engine.filters import target_is_other_node

from .builders import context, node, placement, snapshot, vm


def test_source_is_never_a_target() -> None:
    ctx = context(snapshot([node("pve1"), node("pve2")], [vm(101, node="pve1")]))
    same = target_is_other_node(placement(ctx, 101, "pve1"), ctx)
    assert same is not None and same.rule == Rule.SAME_NODE
    assert target_is_other_node(placement(ctx, 101, "pve2"), ctx) is None
