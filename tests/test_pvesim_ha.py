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
    rules = [*SMALL_SCENARIO["ha_rules"],
             {"rule": "home", "type": "node-affinity", "resources": ["vm:102"],
              "nodes": {"pve2": 2, "pve3": 1}}]
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
    assert task.exitstatus == "migration aborted"
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
