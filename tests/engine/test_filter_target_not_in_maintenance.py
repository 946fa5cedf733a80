import pytest

from balancer.engine import Rule
from balancer.engine.filters import target_not_in_maintenance

from .builders import context, node, snapshot


@pytest.mark.parametrize(("hastate", "expected"), [
    (None, None),
    ("online", None),
    ("maintenance", Rule.MAINTENANCE),
    ("fence", Rule.MAINTENANCE),
    ("gone", Rule.MAINTENANCE),
])
def test_target_not_in_maintenance(hastate: str | None, expected: str | None) -> None:
    target = node("pve2", hastate=hastate)
    rejection = target_not_in_maintenance(target, context(snapshot([node("pve1"), target])))
    assert (rejection.rule if rejection else None) == expected
    if rejection:
        assert rejection.message == f"maintenance: pve2 is in HA state {hastate}"
