import pytest

from balancer.engine import Rule
from balancer.engine.filters import target_online
from balancer.model import Node

from .builders import context, node, snapshot


@pytest.mark.parametrize(("target", "expected"), [
    (node("pve2"), None),
    (node("pve2", online=False), Rule.OFFLINE),
    (node("pve2", maxcpu=0), Rule.NO_CAPACITY),
    (node("pve2", maxmem_gib=0), Rule.NO_CAPACITY),
])
def test_target_online(target: Node, expected: str | None) -> None:
    rejection = target_online(target, context(snapshot([node("pve1"), target])))
    assert (rejection.rule if rejection else None) == expected
    if rejection:
        assert rejection.subject == "pve2"
