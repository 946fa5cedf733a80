import pytest

from balancer.engine import Rule
from balancer.engine.filters import anti_affinity
from balancer.model import Guest, ResourceAffinityRule, UnreadableGuest

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


# --- partners the snapshot could not read (issue 13): refuse what cannot be ruled out ---------

def _unreadable(vmid: int | None, node: str | None,
                tags: frozenset[str] | None) -> UnreadableGuest:
    return UnreadableGuest(vmid=vmid, node=node, tags=tags, problem="cpu is 'n/a'")


@pytest.mark.parametrize(("partner", "rules", "refused"), [
    pytest.param(_unreadable(102, "pve2", frozenset({"plb_anti_affinity_db"})), (), {"pve2"},
                 id="readable-tags-known-node"),
    pytest.param(_unreadable(102, "pve2", None), (), {"pve2"}, id="unreadable-tags"),
    pytest.param(_unreadable(None, "pve3", None), (), {"pve3"}, id="no-vmid-either"),
    pytest.param(_unreadable(102, None, frozenset({"plb_anti_affinity_db"})), (),
                 {"pve2", "pve3"}, id="unknown-node-could-be-anywhere"),
    pytest.param(_unreadable(102, "pve2", frozenset()), APART, {"pve2"}, id="ha-rule-member"),
    pytest.param(_unreadable(102, "pve2", frozenset({"plb_anti_affinity_web"})), (), set(),
                 id="other-group-is-no-partner"),
])
def test_unreadable_partners_block_the_targets_they_may_be_on(
        partner: UnreadableGuest, rules: tuple[ResourceAffinityRule, ...],
        refused: set[str]) -> None:
    guests = [vm(101, tags={"plb_anti_affinity_db"})]
    ctx = context(snapshot(NODES, guests, resource_affinity=rules,
                           unreadable_guests=(partner,)))
    rejected = {target for target in ("pve2", "pve3")
                if anti_affinity(placement(ctx, 101, target), ctx) is not None}
    assert rejected == refused


def test_the_message_says_the_partner_is_only_suspected() -> None:
    ctx = context(snapshot(NODES, [vm(101, tags={"plb_anti_affinity_db"})],
                           unreadable_guests=(_unreadable(102, "pve2", None),)))
    rejection = anti_affinity(placement(ctx, 101, "pve2"), ctx)
    assert rejection is not None
    assert "vm 102 (unreadable entry: may be a member)" in rejection.message
