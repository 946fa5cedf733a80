import pytest

from balancer.engine import Rule
from balancer.engine.filters import target_not_excluded

from .builders import config, context, node, snapshot


@pytest.mark.parametrize(("excluded", "expected"), [
    ((), None),
    (("pve3",), None),
    (("pve2",), Rule.EXCLUDED_NODE),
])
def test_target_not_excluded(excluded: tuple[str, ...], expected: str | None) -> None:
    target = node("pve2")
    ctx = context(snapshot([node("pve1"), target]), cfg=config(exclude_nodes=excluded))
    rejection = target_not_excluded(target, ctx)
    assert (rejection.rule if rejection else None) == expected
