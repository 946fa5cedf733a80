"""Sources: maintenance and excluded nodes are never drained (evacuation is PVE's job)."""

import pytest

from balancer.engine import Rule
from balancer.engine.filters import SOURCE_FILTERS, first_node_rejection
from balancer.model import Node

from .builders import config, context, node, snapshot


@pytest.mark.parametrize(("source", "expected"), [
    (node("pve1"), None),
    (node("pve1", online=False), Rule.SOURCE_OFFLINE),
    (node("pve1", hastate="maintenance"), Rule.SOURCE_MAINTENANCE),
    (node("pve1", hastate="fence"), Rule.SOURCE_MAINTENANCE),
    (node("pve1", hastate="gone"), Rule.SOURCE_MAINTENANCE),
    (node("pve0"), Rule.SOURCE_EXCLUDED),
])
def test_source_filters(source: Node, expected: str | None) -> None:
    ctx = context(snapshot([source, node("pve2")]), cfg=config(exclude_nodes=["pve0"]))
    rejection = first_node_rejection(SOURCE_FILTERS, source, ctx)
    assert (rejection.rule if rejection else None) == expected
