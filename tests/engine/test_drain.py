"""Drain (issue 17): a drained node is never a target and loses its running VMs one per
cycle, biggest first, to the best valid target (not bound by the midpoint); what cannot
leave is listed with its reason, never forced; stopped VMs and containers stay, listed."""

from __future__ import annotations

from dataclasses import replace

from balancer.engine import Decision, DrainState, Rule, Trigger, decide

from .builders import config, ct, engine_input, node, snapshot, vm


def run(nodes: list, guests: list, drained: dict[str, str], **cfg: object) -> Decision:
    inp = engine_input(snapshot(nodes, guests), cfg=config(**cfg))
    return decide(replace(inp, drained=drained))


def test_the_biggest_running_vm_leaves_first_to_the_best_target() -> None:
    nodes = [node("pve1", mem_gib=64), node("pve2", mem_gib=120), node("pve3", mem_gib=40)]
    d = run(nodes, [vm(100, mem_gib=4), vm(101, mem_gib=16), vm(102, mem_gib=8)],
            {"pve1": "maintenance by alice"})
    assert d.move is not None
    assert (d.move.reason, d.move.vmid, d.move.source, d.move.target) == (
        Trigger.DRAIN, 101, "pve1", "pve3")
    [progress] = d.drains
    assert (progress.node, progress.state, progress.running) == ("pve1", DrainState.MOVING, 3)


def test_a_drain_ignores_the_midpoint_a_balancing_move_would_keep() -> None:
    """pve2 holds more than pve1: a balancing move there would flip the imbalance."""
    nodes = [node("pve1", mem_gib=10), node("pve2", mem_gib=150)]
    d = run(nodes, [vm(100, mem_gib=8)], {"pve1": "hardware swap"})
    assert d.move is not None and d.move.target == "pve2"
    assert d.move.target_after.memory > d.move.source_after.memory


def test_a_drained_node_is_never_a_target_for_any_trigger() -> None:
    """pve1 is over memory_max; pve2, the only roomy node, is drained and empty."""
    nodes = [node("pve1", mem_gib=230), node("pve2", mem_gib=8)]
    d = run(nodes, [vm(100, mem_gib=8), vm(101, mem_gib=8)], {"pve2": "decommission"})
    assert d.move is None
    [progress] = d.drains
    assert progress.state is DrainState.EMPTY
    assert "memory: source skipped: no_open_target: pve1 has no node to move to " \
           "(1 closed: 1 drained)" in d.explanation


def test_what_cannot_leave_is_listed_with_its_reason_never_forced() -> None:
    nodes = [node("pve1", mem_gib=64), node("pve2", mem_gib=200)]  # pve2 has no room
    guests = [vm(100, mem_gib=32), vm(101, tags=["plb_pin_pve1"]), vm(102, lock="backup"),
              vm(103, status="stopped"), ct(104), vm(105, template=True, status="stopped")]
    d = run(nodes, guests, {"pve1": "maintenance"})
    assert d.move is None
    [progress] = d.drains
    assert progress.state is DrainState.STUCK and progress.running == 3
    stuck = {s.vmid: s.why for s in progress.stuck}
    assert set(stuck) == {100, 101, 102}
    assert stuck[100] == "no valid target: 1 memory_headroom"
    assert "pinned" in stuck[101] or "memory_headroom" in stuck[101]
    assert stuck[102] == "locked: vm 102 is locked (backup)"
    assert {left.vmid for left in progress.left} == {103, 104, 105}
    assert "drain: pve1 stuck: 3 running VMs cannot leave" in d.explanation[0]


def test_a_pinned_vm_stays_when_its_pins_name_only_the_drained_node() -> None:
    nodes = [node("pve1"), node("pve2")]
    d = run(nodes, [vm(100, tags=["plb_pin_pve1"])], {"pve1": "maintenance"})
    assert d.move is None
    [progress] = d.drains
    assert [(s.vmid, s.why) for s in progress.stuck] == [(100, "no valid target: 1 pinned")]


def test_drain_goes_before_rule_repair_and_saturation() -> None:
    nodes = [node("pve1", cpu=0.95), node("pve2"), node("pve3")]
    guests = [vm(100, node="pve1", cpu=4.0), vm(101, node="pve1", cpu=4.0),
              vm(200, node="pve2", tags=["plb_anti_affinity_x"]),
              vm(201, node="pve2", tags=["plb_anti_affinity_x"]), vm(300, node="pve3")]
    d = run(nodes, guests, {"pve3": "maintenance"})
    assert d.move is not None and (d.move.reason, d.move.vmid) == (Trigger.DRAIN, 300)
    assert d.move.target in {"pve1", "pve2"}


def test_one_move_per_cycle_across_drained_nodes_the_others_wait() -> None:
    nodes = [node("pve1"), node("pve2"), node("pve3")]
    d = run(nodes, [vm(100), vm(200, node="pve2")], {"pve1": "a", "pve2": "b"})
    assert d.move is not None and d.move.source == "pve1" and d.move.target == "pve3"
    assert [(p.node, p.state) for p in d.drains] == [
        ("pve1", DrainState.MOVING), ("pve2", DrainState.WAITING)]


def test_an_offline_drained_node_moves_nothing_and_says_so() -> None:
    nodes = [node("pve1", online=False), node("pve2")]
    d = run(nodes, [vm(100)], {"pve1": "dead"})
    assert d.move is None
    assert d.drains[0].state is DrainState.OFFLINE
    assert "drain: pve1 is offline or not in the cluster" in d.explanation[0]
    # Also when another drain moves first: a name that is not a node is never "empty".
    both = run([node("pve1"), node("pve2"), node("pve3")], [vm(100)], {"pve1": "a", "pve9": "typo"})
    assert [(p.node, p.state) for p in both.drains] == [
        ("pve1", DrainState.MOVING), ("pve9", DrainState.OFFLINE)]


def test_ha_maintenance_is_drained_of_non_ha_vms_only_when_asked() -> None:
    nodes = [node("pve1", hastate="maintenance"), node("pve2")]
    guests = [vm(100, hastate="started"), vm(101)]
    off = run(nodes, guests, {})
    assert off.move is None and off.drains == ()
    on = run(nodes, guests, {}, evacuate_ha_maintenance=True)
    assert on.move is not None and (on.move.reason, on.move.vmid) == (Trigger.DRAIN, 101)
    ha = {s.vmid: s.why for s in on.drains[0].stuck} if on.drains[0].stuck else {}
    assert ha == {}, "the HA VM is not examined once a move is found"
    after = run(nodes, [guests[0]], {}, evacuate_ha_maintenance=True)
    assert after.move is None
    assert [(s.vmid, s.why) for s in after.drains[0].stuck] == [
        (100, f"{Rule.HA_EVACUATES}: vm 100 is HA-managed: PVE's maintenance mode moves it")]


def test_quiet_hours_hold_back_every_trigger_but_drain() -> None:
    nodes = [node("pve1", mem_gib=230), node("pve2", mem_gib=8), node("pve3", mem_gib=8)]
    guests = [vm(100, mem_gib=8), vm(200, node="pve3")]
    inp = engine_input(snapshot(nodes, guests))
    quiet = 'quiet hours "backups" (daily 01:00-05:00 UTC)'
    held = decide(replace(inp, quiet=quiet))
    assert held.move is None
    assert f"{quiet}: only drains move; held back: vm 100 (vm100) pve1 -> " \
           in held.explanation[0]
    drained = decide(replace(inp, quiet=quiet, drained={"pve3": "swap"}))
    assert drained.move is not None and drained.move.reason is Trigger.DRAIN
