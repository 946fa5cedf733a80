"""Rule repair (issue 15): broken ProxLB anti-affinity and pins are put right first, one move
per cycle, with the fewest moves; a violation with no valid move is reported, never forced."""

from __future__ import annotations

from balancer.engine import Decision, Trigger, decide

from .builders import config, engine_input, node, resource_affinity, snapshot, vm

WEB = "plb_anti_affinity_web"
DB = "plb_anti_affinity_db"


def three_nodes(pve3_mem_gib: float = 64) -> list:
    return [node("pve1", mem_gib=96), node("pve2", mem_gib=64),
            node("pve3", mem_gib=pve3_mem_gib)]


def run(guests: list, nodes: list | None = None, **cfg: object) -> Decision:
    return decide(engine_input(snapshot(nodes or three_nodes(), guests), cfg=config(**cfg)))


def test_two_members_on_one_node_the_smaller_copy_moves() -> None:
    nodes = [node("pve1", mem_gib=96), node("pve2", mem_gib=80), node("pve3", mem_gib=64)]
    d = run([vm(100, mem_gib=16, tags=[WEB]), vm(101, mem_gib=4, tags=[WEB]),
             vm(102, node="pve2", mem_gib=8)], nodes)
    assert d.move is not None
    assert (d.move.reason, d.move.vmid, d.move.source) == (Trigger.RULE, 101, "pve1")
    assert d.move.target == "pve3", "the best target by the usual score: the emptier node"
    assert [(v.rule, v.node, v.vmids) for v in d.violations] == [
        ("anti_affinity", "pve1", (100, 101))]
    assert "rule: vm 100, vm 101 share pve1 against plb_anti_affinity_web" in d.explanation


def test_the_member_whose_move_fixes_most_goes_first() -> None:
    """vm 100 shares pve1 with 101 (web) and 102 (db): moving it fixes both groups."""
    d = run([vm(100, mem_gib=32, tags=[WEB, DB]), vm(101, mem_gib=4, tags=[WEB]),
             vm(102, mem_gib=4, tags=[DB])])
    assert d.move is not None and d.move.vmid == 100
    assert len(d.violations) == 2


def test_a_vm_outside_its_pins_goes_back_even_past_the_midpoint() -> None:
    """pve3 holds more than pve1: a balancing move there would flip the imbalance, but a
    repair is not a balancing move."""
    nodes = three_nodes(pve3_mem_gib=150)
    d = run([vm(200, mem_gib=8, tags=["plb_pin_pve3"])], nodes)
    assert d.move is not None
    assert (d.move.reason, d.move.vmid, d.move.target) == (Trigger.RULE, 200, "pve3")
    assert d.move.target_after.memory > d.move.source_after.memory


def test_a_violation_without_a_valid_move_is_reported_not_forced() -> None:
    nodes = three_nodes(pve3_mem_gib=200)  # pve3 above memory_max - margin: no room
    d = run([vm(200, mem_gib=8, tags=["plb_pin_pve3"])], nodes)
    assert d.move is None
    assert [v.describe() for v in d.violations] == [
        "vm 200 runs on pve1, outside its pinned nodes pve3"]
    assert "rule: cannot repair vm 200 runs on pve1, outside its pinned nodes pve3: " \
           "no valid move" in d.explanation[0]
    assert d.to_dict()["violations"][0]["vmids"] == [200]


def test_repair_off_reports_only() -> None:
    d = run([vm(100, tags=[WEB]), vm(101, tags=[WEB])], repair_rules=False)
    assert d.move is None
    assert len(d.violations) == 1
    assert "rule: 1 broken, not repaired (balancing.repair_rules: false)" in d.explanation[0]


def test_broken_ha_rules_are_pves_to_enforce() -> None:
    guests = [vm(100), vm(101)]
    snap = snapshot(three_nodes(), guests,
                    resource_affinity=(resource_affinity("apart", 100, 101, positive=False),))
    d = decide(engine_input(snap))
    assert d.violations == () and d.move is None


def test_without_proxlb_tags_nothing_is_a_violation() -> None:
    d = run([vm(100, tags=[WEB]), vm(101, tags=[WEB])], proxlb_tags=False)
    assert d.violations == () and d.move is None


def test_repair_comes_before_saturation() -> None:
    nodes = [node("pve1", cpu=0.95), node("pve2"), node("pve3")]
    guests = [vm(100, cpu=0.9, maxcpu=8), vm(101, cpu=0.9, maxcpu=8),
              vm(102, node="pve2", tags=[WEB]), vm(103, node="pve2", tags=[WEB])]
    d = run(guests, nodes)
    assert d.move is not None and (d.move.reason, d.move.source) == (Trigger.RULE, "pve2")


def test_a_guest_that_may_not_move_is_skipped_for_the_other_member() -> None:
    d = run([vm(100, mem_gib=2, tags=[WEB], lock="backup"), vm(101, mem_gib=8, tags=[WEB])])
    assert d.move is not None and d.move.vmid == 101
    assert any("vm 100 on pve1: not a candidate: locked" in line for line in d.explanation)


def test_many_violations_make_a_bounded_explanation() -> None:
    nodes = [node(f"pve{i}", mem_gib=240) for i in range(1, 4)]  # no room anywhere
    guests = [vm(100 + i, node="pve1", tags=[f"plb_anti_affinity_g{i // 2}"])
              for i in range(40)]
    d = run(guests, nodes)
    assert d.move is None and len(d.violations) == 20
    assert " and 17 more: no valid move;" in d.explanation[0]
    assert len([line for line in d.explanation if line.startswith("rule: vm")]) == 10
    assert "rule: 10 more broken rules (all in plan --json and status)" in d.explanation
    assert len([f for f in d.fired if f.trigger is Trigger.RULE]) == 20
