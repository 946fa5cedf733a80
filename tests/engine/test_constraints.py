"""HA rules and ProxLB tags become per-vmid lookups."""

from balancer.engine.constraints import derive_constraints

from .builders import config, node, node_affinity, resource_affinity, snapshot, vm

NODES = [node("pve1"), node("pve2"), node("pve3")]


def test_rules_map_members_to_rule_names() -> None:
    snap = snapshot(NODES, [vm(101), vm(102), vm(103, node="pve2")],
                    node_affinity=(node_affinity("web-on-fast", 101, strict=True),),
                    resource_affinity=(resource_affinity("db-together", 102, positive=True),
                                       resource_affinity("db-apart", 102, 103, positive=False)))
    c = derive_constraints(snap, config())
    assert c.node_affinity == {101: "web-on-fast"}
    assert c.positive_affinity == {102: "db-together"}
    (group,) = c.anti_affinity[103]
    assert group.label == "resource-affinity rule db-apart"
    assert group.others_on("pve1", 103) == [102]
    assert group.others_on("pve2", 103) == []  # a member never counts against itself


def test_proxlb_tags_are_read_case_insensitively() -> None:
    guests = [vm(101, tags={"PLB_Pin_PVE2", "plb_pin_pve3"}), vm(102, tags={"plb_ignore_vm"}),
              vm(103, tags={"plb_affinity_web"}), vm(104, tags={"plb_anti_affinity_db"}),
              vm(105, node="pve2", tags={"plb_anti_affinity_db"})]
    c = derive_constraints(snapshot(NODES, guests), config())
    assert c.pins == {101: frozenset({"pve2", "pve3"})}
    assert c.plb_ignore == {102: "plb_ignore_vm"}
    assert c.plb_affinity == {103: "plb_affinity_web"}
    assert c.anti_affinity[104][0].others_on("pve2", 104) == [105]


def test_proxlb_tags_are_ignored_when_disabled() -> None:
    guests = [vm(101, tags={"plb_pin_pve2", "plb_ignore", "plb_anti_affinity_x"})]
    c = derive_constraints(snapshot(NODES, guests), config(proxlb_tags=False))
    assert (c.pins, c.plb_ignore, c.anti_affinity) == ({}, {}, {})


def test_exclude_tags_match_regardless_of_case() -> None:
    guests = [vm(101, tags={"Keep-Here"}), vm(102, tags={"other"})]
    c = derive_constraints(snapshot(NODES, guests), config(exclude_tags=["keep-here"]))
    assert c.excluded_tag == {101: "keep-here"}
