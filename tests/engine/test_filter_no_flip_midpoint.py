import pytest

from balancer.engine import Rule
from balancer.engine.filters import no_flip_midpoint
from balancer.engine.views import Resource

from .builders import context, node, placement, snapshot, vm


@pytest.mark.parametrize(("source_cpu", "target_cpu", "cores", "expected"), [
    pytest.param(0.90, 0.30, 8.0, None, id="0.30+0.25=0.55<=mid-0.60"),
    pytest.param(0.90, 0.50, 8.0, Rule.MIDPOINT, id="0.50+0.25=0.75>mid-0.70"),
    pytest.param(0.90, 0.50, 6.4, None, id="0.50+0.20=0.70=mid"),
])
def test_no_flip_midpoint_cpu(source_cpu: float, target_cpu: float, cores: float,
                              expected: str | None) -> None:
    snap = snapshot([node("pve1", cpu=source_cpu), node("pve2", cpu=target_cpu)],
                    [vm(101, cpu=cores / 8, maxcpu=8)])
    ctx = context(snap)
    rejection = no_flip_midpoint(placement(ctx, 101, "pve2", Resource.CPU), ctx)
    assert (rejection.rule if rejection else None) == expected


def test_no_flip_midpoint_memory_uses_memory_only() -> None:
    snap = snapshot([node("pve1", cpu=0.1, mem_gib=80, maxmem_gib=100),
                     node("pve2", cpu=0.9, mem_gib=50, maxmem_gib=100)],
                    [vm(101, mem_gib=20, maxmem_gib=32)])
    ctx = context(snap)
    rejection = no_flip_midpoint(placement(ctx, 101, "pve2", Resource.MEMORY), ctx)
    assert rejection is not None  # 0.70 after > midpoint 0.65, whatever the CPU says
    assert rejection.message == ("midpoint: pve2 memory 0.70 after move > midpoint 0.65 "
                                 "(source pve1 0.80, target 0.50 before)")
    assert rejection.observed == pytest.approx(0.70)
    assert rejection.limit == pytest.approx(0.65)


def test_no_flip_midpoint_charges_what_the_vm_uses_not_its_maxmem() -> None:
    """Issue 15: the midpoint compares usage with usage. The VM uses 8 GiB of its 20: the
    target would hold 0.58 (<= 0.65), although 0.70 once the VM grew to its maximum (the
    headroom filter's business)."""
    snap = snapshot([node("pve1", mem_gib=80, maxmem_gib=100),
                     node("pve2", mem_gib=50, maxmem_gib=100)],
                    [vm(101, mem_gib=8, maxmem_gib=20)])
    ctx = context(snap)
    assert no_flip_midpoint(placement(ctx, 101, "pve2", Resource.MEMORY), ctx) is None
