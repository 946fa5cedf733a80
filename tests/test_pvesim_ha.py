"""The simulated HA stack and time-dependent views, driven in-process with advance()."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pvesim import ApiError, Simulator
from tests.support.pvesim_server import SMALL_SCENARIO

START = 1_750_000_000.0


def _sim(**changes: Any) -> Simulator:
    data = copy.deepcopy(SMALL_SCENARIO)
    data.update(changes)
    return Simulator(data, start_time=START)


def _settle(sim: Simulator, seconds: float = 60, step: float = 1.0) -> None:
    for _ in range(int(seconds / step)):
        sim.advance(step)


def test_maintenance_evacuates_ha_guests_and_brings_them_back() -> None:
    sim = _sim()
    sim.set_node_hastate("pve1", "maintenance")
    _settle(sim)
    # 101 cannot join its anti-affinity partner 102 on pve2; non-HA 100 stays.
    assert sim.guest(101).node == "pve3"
    assert sim.guest(100).node == "pve1"
    moves = [r for r in sim.migration_log if r.type == "qmigrate"]
    assert [(r.vmid, r.user, r.exitstatus) for r in moves] == [(101, "root@pam", "OK")]
    status = sim.call("GET", "/cluster/ha/status/manager_status")["manager_status"]
    assert status["node_status"]["pve1"] == "maintenance"
    assert status["service_status"]["vm:101"]["maintenance_node"] == "pve1"
    sim.set_node_hastate("pve1", "online")
    _settle(sim)
    assert sim.guest(101).node == "pve1"


def test_failback_to_node_affinity_favourite() -> None:
    # One priority class: a node rule with several may not share resources with a
    # resource-affinity rule (see test_infeasible_rules_carry_errors_and_are_dropped).
    rules = [*SMALL_SCENARIO["ha_rules"],
             {"rule": "home", "type": "node-affinity", "resources": ["vm:102"],
              "nodes": ["pve2"]}]
    sim = _sim(ha_rules=rules)
    upid = sim.start_migration(102, "pve3", user="balancer@pve!balancer")
    assert ":hamigrate:" in upid
    _settle(sim, 20)
    _settle(sim, 60)
    vm_moves = [(r.type, r.source, r.target) for r in sim.migration_log]
    assert ("qmigrate", "pve2", "pve3") in vm_moves
    assert ("qmigrate", "pve3", "pve2") in vm_moves  # the CRM moved it home again
    assert sim.guest(102).node == "pve2"


def test_offline_node_is_fenced_and_ha_guests_recovered() -> None:
    sim = _sim(ha={"crm_interval": 2.0, "fence_delay": 30.0})
    sim.set_node_online("pve2", False)
    sim.advance(10)
    assert sim.guest(102).hastate == "fence"
    assert sim.guest(102).status == "unknown"
    assert sim.guest(104).status == "unknown"
    _settle(sim, 40)
    assert sim.guest(102).node in ("pve1", "pve3") and sim.guest(102).node != sim.guest(101).node
    assert sim.guest(102).status == "running" and sim.guest(102).hastate == "started"
    assert sim.guest(104).node == "pve2"  # not HA: stays with its dead node


def test_node_going_offline_aborts_its_migrations() -> None:
    sim = _sim()
    upid = sim.start_migration(100, "pve2")
    sim.advance(0.5)
    sim.set_node_online("pve2", False)
    task = sim.task(upid)
    # the live copy loses its target: a phase 2 failure (AbstractMigrate.pm migrate)
    assert task.exitstatus == "migration problems"
    assert any("online migrate failure - lost connection to node 'pve2'" in line
               for line in task.log)
    assert sim.guest(100).node == "pve1" and sim.guest(100).lock is None


def test_rrd_history_follows_migrations() -> None:
    sim = _sim()
    sim.advance(600)
    upid = sim.start_migration(100, "pve3")
    sim.advance(600)
    assert sim.task(upid).exitstatus == "OK"
    rows = sim.call("GET", "/nodes/pve1/rrddata", timeframe="hour")
    assert rows[0]["cpu"] == pytest.approx(0.22)  # 100 was still on pve1 an hour ago
    assert rows[-1]["cpu"] == pytest.approx(0.22 - 2.0 / 16)
    peak = sim.call("GET", "/nodes/pve3/rrddata", timeframe="hour", cf="MAX")
    assert max(r["memused"] for r in peak) >= sim.node("pve3").mem


def test_cluster_tasks_lag_and_task_filters() -> None:
    sim = _sim()
    sim.set_cluster_tasks_lag(10)
    upid = sim.start_migration(103, "pve1", user="balancer@pve!balancer")
    assert upid not in {t["upid"] for t in sim.call("GET", "/cluster/tasks")}
    sim.advance(11)
    entry = next(t for t in sim.call("GET", "/cluster/tasks") if t["upid"] == upid)
    assert "endtime" not in entry  # finished at +2 s, but the broadcast is 10 s old
    sim.advance(5)
    entry = next(t for t in sim.call("GET", "/cluster/tasks") if t["upid"] == upid)
    assert entry["status"] == "OK"
    listing = sim.call("GET", "/nodes/pve3/tasks", userfilter="balancer", errors=False)
    assert [t["upid"] for t in listing.data] == [upid] and listing.total == 1
    assert sim.call("GET", "/nodes/pve3/tasks", statusfilter="error").total == 0


def test_set_guest_load_and_status() -> None:
    sim = _sim()
    base = sim.node("pve1").cpu
    sim.set_guest_cpu(100, 1.0)
    assert sim.node("pve1").cpu == pytest.approx(base + 4 * 0.5 / 16)
    sim.set_guest_mem(100, 4 * 1024**3)
    assert sim.guest(100).mem == 4 * 1024**3
    sim.set_guest_status(100, "stopped")
    assert sim.guest(100).cpu == 0.0
    with pytest.raises(ApiError, match="can't migrate running VM"):
        sim.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve3")


def _rows_by_time(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {row["time"]: row for row in rows}


def test_rrd_history_is_unchanged_by_later_events_and_shows_them_once_past() -> None:
    # pve3 at 0.82 cpu demand (105 at 1.6 of 8 vCPUs); 100 (+0.125) tips it over the 0.9 knee
    # of its guests' cpu pressure.
    data = copy.deepcopy(SMALL_SCENARIO)
    next(g for g in data["guests"] if g["vmid"] == 105)["cpu"] = 1.6
    sim = Simulator(data, start_time=START)
    sim.advance(1800)
    node_before = _rows_by_time(sim.call("GET", "/nodes/pve3/rrddata", timeframe="hour"))
    guest_before = _rows_by_time(
        sim.call("GET", "/nodes/pve3/qemu/105/rrddata", timeframe="hour", cf="MAX")
    )
    moved_at = sim.now()
    upid = sim.start_migration(100, "pve3")
    sim.advance(900)
    assert sim.task(upid).exitstatus == "OK"
    node_after = _rows_by_time(sim.call("GET", "/nodes/pve3/rrddata", timeframe="hour"))
    guest_after = _rows_by_time(
        sim.call("GET", "/nodes/pve3/qemu/105/rrddata", timeframe="hour", cf="MAX")
    )

    # Every bucket that ended before the migration reads exactly as it did then...
    past = [t for t in node_before if t < moved_at and t in node_after]
    assert len(past) > 20
    assert [node_after[t] for t in past] == [node_before[t] for t in past]
    assert [guest_after[t] for t in past] == [guest_before[t] for t in past]
    # ...and the buckets after it show the guest on pve3.
    last = max(node_after)
    assert node_after[last]["cpu"] == pytest.approx(node_before[past[-1]]["cpu"] + 4 * 0.5 / 16)
    assert node_after[last]["memused"] > node_before[past[-1]]["memused"]
    assert guest_before[past[-1]]["pressurecpusome"] == 0.0
    assert guest_after[last]["pressurecpusome"] == pytest.approx((0.945 - 0.9) * 150)


def test_rrd_sample_at_the_current_instant_sees_changes_made_at_that_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A frozen real clock: simulated time moves only with advance(), so "now" can sit exactly
    # on an RRD sample (a bucket end) while a change happens at that same instant.
    monkeypatch.setattr("pvesim.clock.time.monotonic", lambda: 1000.0)
    sim = _sim()
    now = sim.advance(620)
    assert now % 60 == 0
    before = sim.call("GET", "/nodes/pve1/rrddata", timeframe="hour", cf="MAX")
    assert before[-1]["time"] == now
    sim.set_guest_cpu(100, 2.0)  # at `now`: counts in the sample at `now`
    after = sim.call("GET", "/nodes/pve1/rrddata", timeframe="hour", cf="MAX")
    assert after[:-1] == before[:-1]
    assert after[-1]["cpu"] == pytest.approx(before[-1]["cpu"] + 4 * 1.5 / 16)


def test_memoised_loads_stay_bounded_over_a_long_run() -> None:
    from pvesim.cluster import LOAD_CACHE_GRID, LOAD_CACHE_HORIZON

    sim = _sim()
    for _ in range(12):
        sim.advance(3600)
        for name in ("pve1", "pve2", "pve3"):
            sim.call("GET", f"/nodes/{name}/rrddata", timeframe="hour")
    limit = LOAD_CACHE_HORIZON / LOAD_CACHE_GRID * 1.1
    assert all(0 < len(memo) <= limit for memo in sim.cluster._load_memo.values())


def test_an_event_scheduled_in_the_past_is_not_hidden_by_memoised_loads() -> None:
    # Scenario settings cannot produce one (delays are >= 0); the cluster still must not
    # answer from memoised loads that such an event changed.
    sim = _sim()
    now = sim.advance(1200)
    before = _rows_by_time(sim.call("GET", "/nodes/pve1/rrddata", timeframe="hour"))
    past = now - 600
    guest = sim.cluster.guests[100]
    sim.cluster.schedule(past, lambda t: guest.cpu_override.set(t, 2.0))
    after = _rows_by_time(sim.call("GET", "/nodes/pve1/rrddata", timeframe="hour"))
    changed = [t for t in before if before[t] != after[t]]
    assert changed and min(changed) >= past
    assert after[max(changed)]["cpu"] == pytest.approx(before[max(changed)]["cpu"] + 4 * 1.5 / 16)


def test_status_current_ha_shows_the_crm_state() -> None:
    # pve-ha-manager Config.pm get_service_status: service_status[sid].state, not the
    # requested state; an ignored resource counts as not managed.
    guests = copy.deepcopy(SMALL_SCENARIO["guests"])
    next(g for g in guests if g["vmid"] == 100)["ha"] = "ignored"
    sim = _sim(guests=guests)
    assert sim.call("GET", "/nodes/pve1/qemu/100/status/current")["ha"] == {"managed": 0}
    assert sim.call("GET", "/nodes/pve2/lxc/104/status/current")["ha"] == {"managed": 0}
    sim.start_migration(101, "pve3", user="balancer@pve!balancer")
    for _ in range(20):
        sim.advance(0.25)
        if sim.guest(101).hastate == "migrate":
            break
    current = sim.call("GET", "/nodes/pve1/qemu/101/status/current")
    assert current["ha"] == {"managed": 1, "state": "migrate"}


def test_migrate_against_a_strict_node_affinity_rule_is_accepted_then_undone() -> None:
    # pve-ha-manager Manager.pm next_state_started checks only that the target is online:
    # the guest moves, and select_service_node brings it back on a later round.
    rules = [*SMALL_SCENARIO["ha_rules"],
             {"rule": "pin", "type": "node-affinity", "resources": ["vm:102"],
              "nodes": ["pve2"], "strict": True}]
    sim = _sim(ha_rules=rules)
    upid = sim.start_migration(102, "pve3", user="balancer@pve!balancer")
    _settle(sim, 60)
    assert sim.task(upid).exitstatus == "OK"
    moves = [(r.type, r.source, r.target) for r in sim.migration_log if r.type == "qmigrate"]
    assert moves == [("qmigrate", "pve2", "pve3"), ("qmigrate", "pve3", "pve2")]
    assert sim.guest(102).node == "pve2"


def test_disabled_and_ignored_resources_and_no_ha() -> None:
    # pve-ha-manager Manager.pm: disabled goes request_stop -> stopped; ignored resources
    # are removed from service_status; Status.pm adds lrm_status only for node_status nodes.
    guests = copy.deepcopy(SMALL_SCENARIO["guests"])
    next(g for g in guests if g["vmid"] == 103)["ha"] = "disabled"
    next(g for g in guests if g["vmid"] == 100)["ha"] = "ignored"
    sim = _sim(guests=guests)
    services = sim.call("GET", "/cluster/ha/status/manager_status")["manager_status"][
        "service_status"]
    assert services["vm:103"]["state"] == "stopped" and "vm:100" not in services
    hastate = {r["vmid"]: r.get("hastate")
               for r in sim.call("GET", "/cluster/resources", type="vm")}
    assert (hastate[100], hastate[103], hastate[101]) == ("ignored", "stopped", "started")
    current = {e["id"]: e for e in sim.call("GET", "/cluster/ha/status/current")}
    assert current["service:vm:103"]["state"] == "disabled"
    assert current["service:vm:103"]["crm_state"] == "stopped"
    ignored = current["service:vm:100"]
    assert "crm_state" not in ignored and ignored["status"] == "vm:100 (pve1, ignored)"
    assert list(current)[-1] == "service:vm:100"  # not in service_status: listed last

    plain = _sim(ha_rules=[], guests=[{k: v for k, v in g.items() if k != "ha"}
                                      for g in SMALL_SCENARIO["guests"]])
    assert plain.call("GET", "/cluster/ha/status/manager_status") == {
        "manager_status": {}, "quorum": {"node": "pve1", "quorate": 1}}


def test_a_negative_partner_in_flight_blocks_no_node() -> None:
    # pve-ha-manager Config.pm get_resource_motion_info: a partner with node X and target Y
    # blocks neither; one sitting on a node blocks that node.
    sim = _sim()
    before = sim.call("GET", "/nodes/pve1/qemu/101/migrate")
    assert before["not_allowed_nodes"]["pve2"] == {
        "blocking-ha-resources": [{"sid": "vm:102", "cause": "resource-affinity"}]}
    assert before["dependent-ha-resources"] == []
    sim.start_migration(102, "pve3", user="balancer@pve!balancer")
    for _ in range(20):
        sim.advance(0.25)
        if sim.guest(102).hastate == "migrate":
            break
    during = sim.call("GET", "/nodes/pve1/qemu/101/migrate")
    assert during["not_allowed_nodes"] == {"pve2": {}, "pve3": {}}
    assert during["allowed_nodes"] == ["pve2", "pve3"]


def test_blocked_hamigrate_logs_what_the_cli_prints() -> None:
    sim = _sim()
    upid = sim.start_migration(101, "pve2", user="balancer@pve!balancer")
    sim.advance(2)
    task = sim.task(upid)
    assert task.exitstatus == "command 'ha-manager migrate vm:101 pve2' failed: exit code 255"
    assert "cannot migrate resource 'vm:101' to node 'pve2':" in task.log
    assert ("- resource 'vm:102' on target node 'pve2' in negative affinity with resource "
            "'vm:101'") in task.log
    with pytest.raises(ApiError, match="resource 'vm:100' is not HA managed"):
        guests = copy.deepcopy(SMALL_SCENARIO["guests"])
        next(g for g in guests if g["vmid"] == 100)["ha"] = "ignored"
        _sim(guests=guests).call("POST", "/cluster/ha/resources/vm:100/migrate", node="pve2")


def test_the_lrms_forced_move_of_a_passthrough_vm_fails_in_phase_2() -> None:
    # The LRM migrates with force=1 (PVEVM.pm); prepare lets local devices pass with force
    # (its running flag is still 0 there), so only the live copy fails: migration problems.
    guests = copy.deepcopy(SMALL_SCENARIO["guests"])
    next(g for g in guests if g["vmid"] == 105)["ha"] = "started"
    sim = _sim(guests=guests)
    sim.start_migration(105, "pve1", user="balancer@pve!balancer")
    _settle(sim, 30)
    move = next(r for r in sim.migration_log if r.type == "qmigrate")
    assert (move.user, move.exitstatus) == ("root@pam", "migration problems")
    assert sim.guest(105).node == "pve3" and sim.guest(105).lock is None


def test_infeasible_rules_carry_errors_and_are_dropped() -> None:
    # pve-ha-manager Rules.pm check_single_priority_node_affinity_in_resource_affinity_rules
    # flags both rules; the CRM drops them (transform): no failback, no anti-affinity.
    rules = [*SMALL_SCENARIO["ha_rules"],
             {"rule": "home", "type": "node-affinity", "resources": ["vm:102"],
              "nodes": {"pve2": 2, "pve3": 1}}]
    sim = _sim(ha_rules=rules)
    listed = {r["rule"]: r for r in sim.call("GET", "/cluster/ha/rules")}
    assert listed["home"]["errors"] == {"resources": [
        "resources are in a resource affinity rule and cannot be in a node affinity rule "
        "with multiple priorities"]}
    assert listed["db-apart"]["errors"] == {"resources": [
        "resources are in node affinity rules with multiple priorities"]}
    assert listed["home"]["digest"] == listed["db-apart"]["digest"]
    assert sim.call("GET", "/cluster/ha/rules/home") == listed["home"]
    check = sim.call("GET", "/nodes/pve1/qemu/101/migrate")
    assert check["not_allowed_nodes"] == {"pve2": {}, "pve3": {}}
    sim.start_migration(102, "pve3", user="balancer@pve!balancer")
    _settle(sim, 80)
    assert sim.guest(102).node == "pve3"  # no failback from a dropped rule


def test_rule_feasibility_checks() -> None:
    from pvesim.harules import rule_errors
    from pvesim.scenario import HARuleSpec

    def rule(name: str, kind: str, resources: tuple[str, ...], **extra: Any) -> HARuleSpec:
        return HARuleSpec(rule=name, type=kind, resources=resources, order=1, **extra)

    errors = rule_errors([
        rule("apart3", "resource-affinity", ("vm:1", "vm:2", "vm:3"), affinity="negative"),
        rule("with", "resource-affinity", ("vm:4", "vm:5"), affinity="positive"),
        rule("without", "resource-affinity", ("vm:4", "vm:5"), affinity="negative"),
        rule("off", "resource-affinity", ("vm:4", "vm:5"), affinity="negative", disable=True),
        rule("pin6", "node-affinity", ("vm:6",), nodes=(("n1", 0),)),
        rule("pin7", "node-affinity", ("vm:7",), nodes=(("n1", 0),)),
        rule("apart67", "resource-affinity", ("vm:6", "vm:7"), affinity="negative"),
    ], ["n1", "n2"])
    assert errors == {
        "apart3": ["rule defines more resources than available nodes"],
        "with": ["rule shares two or more resources with a negative resource affinity rule"],
        "without": ["rule shares two or more resources with a positive resource affinity rule"],
        "apart67": ["two or more resources are restricted to less nodes than available to "
                    "the resources"],
        "pin6": ["at least one resource is in a negative resource affinity rule and this rule "
                 "would restrict these to less nodes than available to the resources"],
        "pin7": ["at least one resource is in a negative resource affinity rule and this rule "
                 "would restrict these to less nodes than available to the resources"],
    }
