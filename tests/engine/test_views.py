"""Units: guest CPU is rescaled to each node's threads; memory freed != memory claimed."""

import pytest

from balancer.engine import cpu_share
from balancer.engine.views import NodeView, Resource

from .builders import GIB, node, vm


def test_cpu_share_is_guest_cores_over_node_threads() -> None:
    guest = vm(101, cpu=1.5, maxcpu=8)  # 12 threads busy: cpu above 1.0 is legal
    assert cpu_share(guest, node("pve1", maxcpu=48)) == pytest.approx(0.25)
    assert cpu_share(guest, node("pve2", maxcpu=24)) == pytest.approx(0.5)


def test_cpu_share_on_a_node_without_capacity_data_is_zero() -> None:
    assert cpu_share(vm(101, cpu=1.0, maxcpu=4), node("pve1", maxcpu=0)) == 0.0


def test_with_guest_claims_maxmem_and_rescaled_cores() -> None:
    view = NodeView.of(node("pve2", cpu=0.25, maxcpu=16, mem_gib=32, maxmem_gib=128), None)
    after = view.with_guest(vm(101, cpu=0.5, maxcpu=8, mem_gib=6, maxmem_gib=16))
    assert after.cpu == pytest.approx(0.25 + 4 / 16)
    assert after.mem == 48 * GIB  # maxmem, not current use: the guest may grow to it
    assert after.memory == pytest.approx(48 / 128)


def test_without_guest_frees_host_footprint_memhost_first() -> None:
    view = NodeView.of(node("pve1", cpu=0.5, maxcpu=32, mem_gib=100, maxmem_gib=200), None)
    guest = vm(101, cpu=1.0, maxcpu=8, mem_gib=6, maxmem_gib=16, memhost_gib=10)
    after = view.without_guest(guest)
    assert after.cpu == pytest.approx(0.25)
    assert after.mem == 90 * GIB


def test_without_guest_falls_back_to_mem_and_never_goes_negative() -> None:
    view = NodeView.of(node("pve1", cpu=0.01, maxcpu=4, mem_gib=2, maxmem_gib=8), None)
    after = view.without_guest(vm(101, cpu=1.0, maxcpu=4, mem_gib=3))
    assert (after.cpu, after.mem) == (0.0, 0)


def test_view_uses_ema_reading_when_present() -> None:
    from balancer.engine import CpuReading

    view = NodeView.of(node("pve1", cpu=0.95), CpuReading(0.6, 12))
    assert view.cpu == 0.6
    assert view.usage(Resource.CPU) == 0.6
    assert view.usage(Resource.MEMORY) == view.memory
    assert Resource.CPU.other is Resource.MEMORY
