"""The pruning asks the filters for their room (issue 14): a size rule lives in one place."""

import pytest

from balancer.engine import filters
from balancer.engine.views import Resource

from .builders import GIB, context, node, snapshot

NODES = [node("pve1", cpu=0.9, maxcpu=16, mem_gib=100, maxmem_gib=128),
         node("pve2", cpu=0.3, maxcpu=32, mem_gib=32, maxmem_gib=128)]


def test_the_tightest_active_size_filter_bounds_the_room() -> None:
    ctx = context(snapshot(NODES))
    source, target = ctx.views["pve1"], ctx.views["pve2"]
    cpu = filters.room(source, target, Resource.CPU, ctx)
    # headroom: (0.75 - 0.3) x 32 = 14.4 threads; midpoint: (0.9 - 0.3) / 2 x 32 = 9.6
    assert cpu.cpu == pytest.approx(9.6)
    assert cpu.memory == pytest.approx((0.75 - 0.25) * 128 * GIB)
    memory = filters.room(source, target, Resource.MEMORY, ctx)
    assert memory.cpu == pytest.approx(14.4)
    assert memory.memory == pytest.approx((0.75 - 0.25) * 128 * GIB)  # headroom: maxmem
    assert memory.memory_used == pytest.approx((100 - 32) / 2 * GIB)  # midpoint: host memory


def test_a_filter_left_out_no_longer_prunes() -> None:
    """A rule repair passes every filter but the no-flip midpoint: its room is the
    headroom's, so the pruning follows the filter list, not a copy of its arithmetic."""
    ctx = context(snapshot(NODES))
    source, target = ctx.views["pve1"], ctx.views["pve2"]
    assert filters.no_flip_midpoint not in filters.REPAIR_FILTERS
    repair = filters.room(source, target, Resource.CPU, ctx, filters.REPAIR_FILTERS)
    assert repair.cpu == pytest.approx(14.4)
