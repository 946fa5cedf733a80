import pytest

from balancer.engine import CpuReading, Rule
from balancer.engine.filters import cpu_headroom, target_below_cpu_limit

from .builders import config, context, node, placement, snapshot, vm

CFG = config(cpu_max=0.8, safety_margin=0.05)  # targets must stay below 0.75


@pytest.mark.parametrize(("target_cpu", "guest_cores", "expected"), [
    pytest.param(0.40, 8.0, None, id="0.40+0.25=0.65"),
    pytest.param(0.25, 16.0, Rule.CPU_HEADROOM, id="0.25+0.50=0.75-is-not-below"),
    pytest.param(0.25, 15.0, None, id="0.25+0.47=0.72"),
    pytest.param(0.60, 8.0, Rule.CPU_HEADROOM, id="0.60+0.25=0.85"),
])
def test_cpu_headroom(target_cpu: float, guest_cores: float, expected: str | None) -> None:
    snap = snapshot([node("pve1", cpu=0.9), node("pve2", cpu=target_cpu, maxcpu=32)],
                    [vm(101, cpu=guest_cores / 8, maxcpu=8)])
    ctx = context(snap, cfg=CFG)
    rejection = cpu_headroom(placement(ctx, 101, "pve2"), ctx)
    assert (rejection.rule if rejection else None) == expected


def test_cpu_headroom_message_and_numbers() -> None:
    snap = snapshot([node("pve1", cpu=0.9), node("pve3", cpu=0.59, maxcpu=32)],
                    [vm(101, cpu=1.0, maxcpu=8)])
    ctx = context(snap, cfg=CFG)
    rejection = cpu_headroom(placement(ctx, 101, "pve3"), ctx)
    assert rejection is not None
    assert rejection.message == ("cpu_headroom: pve3 0.84 after move > 0.75 "
                                 "(cpu_max 0.80 - margin 0.05)")
    assert rejection.observed == pytest.approx(0.84)
    assert rejection.limit == pytest.approx(0.75)


def test_cpu_headroom_uses_the_target_ema_not_its_instant_cpu() -> None:
    snap = snapshot([node("pve1", cpu=0.9), node("pve2", cpu=0.10)], [vm(101, cpu=0.5)])
    ctx = context(snap, cpu={"pve1": CpuReading(0.9, 50), "pve2": CpuReading(0.74, 50)},
                  cfg=CFG)
    rejection = cpu_headroom(placement(ctx, 101, "pve2"), ctx)
    assert rejection is not None and rejection.observed == pytest.approx(0.74 + 2 / 32)


def test_target_already_at_the_limit_is_rejected_once_for_every_guest() -> None:
    snap = snapshot([node("pve1", cpu=0.9), node("pve2", cpu=0.75), node("pve3", cpu=0.7)])
    ctx = context(snap, cfg=CFG)
    at_limit = target_below_cpu_limit(snap.nodes[1], ctx)
    assert at_limit is not None and at_limit.rule == Rule.CPU_HEADROOM
    assert target_below_cpu_limit(snap.nodes[2], ctx) is None
