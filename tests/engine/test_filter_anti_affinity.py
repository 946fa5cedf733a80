import pytest

from balancer.engine import Rule
from balancer.engine.filters import anti_affinity
from balancer.model import Guest, ResourceAffinityRule

from .builders import context, node, placement, resource_affinity, snapshot, vm

NODES = [node("pve1"), node("pve2"), node("pve3")]
APART = (resource_affinity("db-apart", 101, 102, positive=False),)
TOGETHER = (resource_affinity("db-together", 101, 102, positive=True),)


@pytest.mark.parametrize(("guests", "rules", "target", "expected"), [
    pytest.param([vm(101), vm(102, node="pve2")], APART, "pve2", Rule.ANTI_AFFINITY,
                 id="rule-partner-on-target"),
    pytest.param([vm(101), vm(102, node="pve2")], APART, "pve3", None, id="partner-elsewhere"),
    pytest.param([vm(101), vm(102, node="pve2", status="stopped")], APART, "pve2",
                 Rule.ANTI_AFFINITY, id="stopped-partner-still-counts"),
    pytest.param([vm(101), vm(102, node="pve2")], TOGETHER, "pve2", None,
                 id="positive-rule-is-not-anti-affinity"),
    pytest.param([vm(101, tags={"plb_anti_affinity_db"}),
                  vm(102, node="pve2", tags={"plb_anti_affinity_db"})], (), "pve2",
                 Rule.ANTI_AFFINITY, id="plb-group-partner-on-target"),
    pytest.param([vm(101, tags={"plb_anti_affinity_db"}),
                  vm(102, node="pve2", tags={"plb_anti_affinity_web"})], (), "pve2", None,
                 id="different-plb-groups"),
    pytest.param([vm(101, tags={"plb_anti_affinity_db"}),
                  vm(102, node="pve1", tags={"plb_anti_affinity_db"})], (), "pve3", None,
                 id="partner-on-source-does-not-block"),
])
def test_anti_affinity(guests: list[Guest], rules: tuple[ResourceAffinityRule, ...],
                       target: str, expected: str | None) -> None:
    ctx = context(snapshot(NODES, guests, resource_affinity=rules))
    rejection = anti_affinity(placement(ctx, 101, target), ctx)
    assert (rejection.rule if rejection else None) == expected


def test_moving_vm_never_counts_against_itself_and_message_names_partner() -> None:
    guests = [vm(101), vm(102, node="pve2")]
    ctx = context(snapshot(NODES, guests, resource_affinity=APART))
    rejection = anti_affinity(placement(ctx, 102, "pve1"), ctx)
    assert rejection is not None
    assert rejection.message == ("anti_affinity: pve1 hosts vm 101 of resource-affinity rule "
                                 "db-apart with vm 102")
    assert anti_affinity(placement(ctx, 102, "pve3"), ctx) is None
