import pytest

from balancer.engine import Rule
from balancer.engine.filters import memory_headroom, target_below_memory_limit
from balancer.engine.views import Resource

from .builders import config, context, node, placement, snapshot, vm

CFG = config(memory_max=0.8, safety_margin=0.05)  # targets must stay below 0.75


@pytest.mark.parametrize(("target_mem", "maxmem", "expected"), [
    pytest.param(60, 16, None, id="60+16=76/128"),
    pytest.param(80, 16, Rule.MEMORY_HEADROOM, id="80+16=96/128-is-not-below-0.75"),
    pytest.param(79, 16, None, id="79+16=95/128"),
    pytest.param(90, 16, Rule.MEMORY_HEADROOM, id="90+16=106/128"),
])
def test_memory_headroom(target_mem: float, maxmem: float, expected: str | None) -> None:
    snap = snapshot([node("pve1", mem_gib=120, maxmem_gib=128),
                     node("pve2", mem_gib=target_mem, maxmem_gib=128)],
                    [vm(101, mem_gib=4, maxmem_gib=maxmem)])
    ctx = context(snap, cfg=CFG)
    rejection = memory_headroom(placement(ctx, 101, "pve2", Resource.MEMORY), ctx)
    assert (rejection.rule if rejection else None) == expected


def test_memory_headroom_claims_maxmem_not_current_use() -> None:
    snap = snapshot([node("pve1", mem_gib=120, maxmem_gib=128),
                     node("pve2", mem_gib=64, maxmem_gib=128)],
                    [vm(101, mem_gib=2, maxmem_gib=40)])  # 64+2 fits, 64+40 does not
    ctx = context(snap, cfg=CFG)
    rejection = memory_headroom(placement(ctx, 101, "pve2"), ctx)
    assert rejection is not None
    assert rejection.message == ("memory_headroom: pve2 0.81 after move > 0.75 "
                                 "(memory_max 0.80 - margin 0.05)")


def test_target_already_full_is_rejected_once_for_every_guest() -> None:
    snap = snapshot([node("pve1"), node("pve2", mem_gib=96, maxmem_gib=128)])
    ctx = context(snap, cfg=CFG)
    full = target_below_memory_limit(snap.nodes[1], ctx)
    assert full is not None and full.rule == Rule.MEMORY_HEADROOM
    assert target_below_memory_limit(snap.nodes[0], ctx) is None
