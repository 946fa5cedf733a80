import pytest

from balancer.engine import Rule
from balancer.engine.filters import target_allowed_by_pin

from .builders import config, context, node, placement, snapshot, vm

NODES = [node("pve1"), node("pve2"), node("pve3")]


@pytest.mark.parametrize(("tags", "target", "expected"), [
    pytest.param((), "pve3", None, id="not-pinned"),
    pytest.param(("plb_pin_pve1", "plb_pin_pve2"), "pve2", None, id="between-pinned-nodes"),
    pytest.param(("plb_pin_pve1", "plb_pin_pve2"), "pve3", Rule.PINNED, id="away-from-pins"),
    pytest.param(("plb_pin_pve1",), "pve2", Rule.PINNED, id="single-pin"),
    pytest.param(("plb_pin_pve3",), "pve3", None, id="back-onto-its-pin"),
])
def test_target_allowed_by_pin(tags: tuple[str, ...], target: str,
                               expected: str | None) -> None:
    ctx = context(snapshot(NODES, [vm(101, node="pve1", tags=tags)]))
    rejection = target_allowed_by_pin(placement(ctx, 101, target), ctx)
    assert (rejection.rule if rejection else None) == expected


def test_pins_are_ignored_without_proxlb_tags() -> None:
    ctx = context(snapshot(NODES, [vm(101, tags={"plb_pin_pve1"})]),
                  cfg=config(proxlb_tags=False))
    assert target_allowed_by_pin(placement(ctx, 101, "pve3"), ctx) is None
