"""HA rules, HA manager status and a VM's `ha` status as pve-ha-manager writes them
(fixtures/ha.json names the functions and commits)."""

from __future__ import annotations

import json
from pathlib import Path

from balancer.pve.parse import (
    find_running_migrations,
    parse_ha_rules,
    parse_ha_status,
    parse_vm_status,
)
from tests.conformance.shape import shape_differences
from tests.support.pvesim_server import RunningSim

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "ha.json").read_text())


def test_infeasible_rules_are_dropped_like_the_crm_drops_them() -> None:
    rules = parse_ha_rules(FIXTURE["rules_infeasible"]["payload"])
    assert rules.node_affinity == () and rules.resource_affinity == ()
    assert rules.infeasible == ("vm100-pref", "keep-apart") and rules.disabled == ("old-pin",)


def test_feasible_rules() -> None:
    rules = parse_ha_rules(FIXTURE["rules_feasible"]["payload"])
    [pref] = rules.node_affinity
    assert (pref.name, pref.vmids, pref.nodes, pref.strict) == (
        "vm100-pref", {100}, ("pve1", "pve2"), False)
    [apart] = rules.resource_affinity
    assert (apart.name, apart.vmids, apart.positive) == ("keep-apart", {100, 102}, False)
    assert rules.disabled == ("old-pin",) and rules.warnings == ()


def test_manager_status_and_the_move_it_shows() -> None:
    status = parse_ha_status(FIXTURE["manager_status"]["payload"])
    assert status.master_node == "pve1"
    assert status.node_status == {"pve1": "online", "pve2": "online", "pve3": "maintenance"}
    assert {sid: (s.vmid, s.node, s.state, s.target) for sid, s in status.services.items()} == {
        "vm:100": (100, "pve1", "started", None), "vm:101": (101, "pve2", "migrate", "pve3"),
        "vm:102": (102, "pve2", "started", None)}
    [moving] = find_running_migrations([], status, [])
    assert (moving.vmid, moving.source, moving.target, moving.evidence) == (
        101, "pve2", "pve3", ("ha:migrate",))


def test_no_ha_configured() -> None:
    status = parse_ha_status(FIXTURE["no_ha"]["manager_status"])
    assert status.master_node is None and status.services == {} and status.node_status == {}
    assert parse_ha_rules(FIXTURE["no_ha"]["rules"]).node_affinity == ()


def test_vm_status_ha_object() -> None:
    ha = FIXTURE["qemu_status_ha"]
    moving = parse_vm_status({"status": "running", "ha": ha["vm101"]}, "pve2", 101)
    assert moving.ha_managed and moving.ha_state == "migrate"
    plain = parse_vm_status({"status": "running", "ha": ha["plain"]}, "pve1", 103)
    assert not plain.ha_managed and plain.ha_state is None


# --- pvesim serves the same shapes ------------------------------------------------------------

def test_pvesim_ha_shapes(pvesim: RunningSim) -> None:
    """SMALL_SCENARIO: HA VMs 101 (pve1) and 102 (pve2) kept apart by rule db-apart."""
    prox = pvesim.proxmox()
    [rule] = prox.cluster.ha.rules.get()
    expected_rule = FIXTURE["rules_feasible"]["payload"][1]
    assert shape_differences(expected_rule, rule) == []
    status = prox.cluster.ha.status.manager_status.get()
    expected = FIXTURE["manager_status"]["payload"]
    assert set(status) == set(expected)
    manager = status["manager_status"]
    assert {"master_node", "timestamp", "node_status", "service_status"} <= set(manager)
    service = manager["service_status"]["vm:101"]
    assert shape_differences(expected["manager_status"]["service_status"]["vm:100"],
                             service) == []
    assert prox.nodes("pve1").qemu(101).status.current.get()["ha"] == {
        "managed": 1, "state": "started"}
    assert prox.nodes("pve1").qemu(100).status.current.get()["ha"] == {"managed": 0}


def test_an_idle_crms_node_states_are_not_believed_over_corosync() -> None:
    """O2: a CRM with no resources left stops rewriting its status (pve-ha-manager CRM.pm);
    a node it last saw as `unknown` may have been back for days. `maintenance` stays."""
    from balancer.pve.snapshot import build_snapshot
    from tests.pve import payloads as p

    status = parse_ha_status(FIXTURE["manager_status"]["payload"])
    written = 1767225600
    assert not status.stale(written + 60) and status.stale(written + 3600)
    resources = [p.node("pve1", hastate="unknown"), p.node("pve2", hastate="maintenance"),
                 p.node("pve3", hastate="online")]
    fresh = build_snapshot(resources, p.status(), ha_stale=False)
    stale = build_snapshot(resources, p.status(), ha_stale=True)
    assert [n.hastate for n in fresh.nodes] == ["unknown", "maintenance", "online"]
    assert [n.hastate for n in stale.nodes] == [None, "maintenance", "online"]
    assert any("idle CRM" in w for w in stale.warnings)
