"""Task lists, task status, UPIDs and permissions as PVE writes them (fixtures/tasks.json:
each case names the PVE function and commit it is derived from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from proxmoxer.tools import Tasks

from balancer.pve.check import REQUIRED_PRIVILEGES, has_privilege
from balancer.pve.parse import (
    CRM_ROUND_SECONDS,
    find_running_migrations,
    parse_ha_status,
    parse_task_status,
    parse_tasks,
    upid_node,
    upid_user,
)
from tests.conformance.shape import shape_differences
from tests.support.pvesim_server import RunningSim

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "tasks.json").read_text())
CLUSTER_TASKS: list[dict[str, Any]] = FIXTURE["cluster_tasks"]["payload"]
TOKEN = "balancer@pve!balancer"
NO_HA = parse_ha_status({})


def test_cluster_task_list() -> None:
    tasks = {(t.vmid, t.type, t.user): t for t in parse_tasks(CLUSTER_TASKS)}
    assert sorted(tasks) == [(101, "qmigrate", TOKEN), (102, "hamigrate", TOKEN),
                             (102, "qmigrate", "root@pam"), (103, "qmigrate", TOKEN)]
    assert tasks[101, "qmigrate", TOKEN].running
    assert tasks[102, "qmigrate", "root@pam"].running
    hamigrate = tasks[102, "hamigrate", TOKEN]
    assert not hamigrate.running and (hamigrate.endtime, hamigrate.status) == (1760000302, "OK")
    failed = tasks[103, "qmigrate", TOKEN]
    assert not failed.running and failed.status == "migration aborted"


def test_node_task_lists_active_and_archived() -> None:
    [active] = parse_tasks(FIXTURE["node_tasks_active"]["payload"])
    assert active.running and active.user == TOKEN and active.vmid == 101
    [archived] = parse_tasks(FIXTURE["node_tasks_archived"]["payload"])
    assert not archived.running and archived.user == TOKEN and archived.status == "OK"


@pytest.mark.parametrize(("case", "running", "ok", "exitstatus"), [
    ("running", True, False, None),
    ("ok", False, True, "OK"),
    ("failed", False, False, "migration aborted"),
])
def test_task_status(case: str, running: bool, ok: bool, exitstatus: str | None) -> None:
    payload = FIXTURE["task_status"][case]
    status = parse_task_status(payload, payload["upid"])
    assert (status.running, status.ok, status.exitstatus) == (running, ok, exitstatus)
    assert status.user == TOKEN and status.node == "pve1"


def test_upids_name_node_and_the_full_starter() -> None:
    """PVE's upid_decode keeps `user@realm!token`; proxmoxer's decode_upid drops the token
    part, which is why the client reads the starter itself."""
    for entry in CLUSTER_TASKS:
        decoded = Tasks.decode_upid(entry["upid"])
        assert upid_node(entry["upid"]) == decoded["node"] == "pve1"
        full = f"{entry['user']}!{entry['tokenid']}" if "tokenid" in entry else entry["user"]
        assert upid_user(entry["upid"]) == full and decoded["user"] == entry["user"]


def _crm_status_at(timestamp: float) -> Any:
    return parse_ha_status({"manager_status": {"master_node": "pve1", "timestamp": timestamp,
                                               "service_status": {}}})


def test_what_is_in_flight_right_after_the_hamigrate() -> None:
    """The hamigrate (ended 1760000302) only queued a command: until the CRM has written a
    status a round later, nothing else shows the move. Only PVE's clocks are compared."""
    tasks = parse_tasks(CLUSTER_TASKS)
    before_pickup = [t for t in tasks if t.user != "root@pam"]  # HA has not started it yet
    ended = 1760000302.0

    def moving(ha: Any, resources: list[Any] | None = None) -> dict[int, tuple[str, ...]]:
        return {m.vmid: m.evidence
                for m in find_running_migrations(before_pickup, ha, resources or [])}

    queued = {101: ("task:qmigrate",), 102: ("task:hamigrate queued",)}
    assert moving(_crm_status_at(ended - 5)) == queued  # the CRM's last round was before it
    assert moving(_crm_status_at(ended + CRM_ROUND_SECONDS / 2)) == queued
    assert moving(_crm_status_at(ended + CRM_ROUND_SECONDS + 1)) == {101: ("task:qmigrate",)}
    moved = [{"type": "qemu", "vmid": 102, "node": "pve2"}]  # HA moved it already
    assert moving(_crm_status_at(ended - 5), moved) == {101: ("task:qmigrate",)}


def test_a_running_task_on_an_offline_node_is_stale() -> None:
    tasks = parse_tasks(CLUSTER_TASKS)
    moving = find_running_migrations(tasks, NO_HA, [], frozenset({"pve1"}), now=1760000303.0)
    assert moving == []


def test_permissions_of_a_least_privilege_token() -> None:
    payload = FIXTURE["permissions"]["payload"]
    granted = {(priv, path) for priv, path, _ in REQUIRED_PRIVILEGES
               if has_privilege(payload, priv, path)}
    assert granted == {(priv, path) for priv, path, _ in REQUIRED_PRIVILEGES}
    assert not has_privilege(payload, "Sys.Audit", "/vms")  # the /vms ACL replaced it


def test_a_path_pve_leaves_out_grants_nothing() -> None:
    payload = dict(FIXTURE["permissions"]["payload"])
    del payload[FIXTURE["permissions"]["no_access_on_vms"]["payload_without"]]
    assert not has_privilege(payload, "VM.Audit", "/vms")
    assert not has_privilege(payload, "VM.Migrate", "/vms")
    assert has_privilege(payload, "VM.Audit", "/")


# --- pvesim serves the same shapes ------------------------------------------------------------

def test_pvesim_task_entries_have_pves_shape(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    upid = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    running = next(t for t in prox.cluster.tasks.get() if t["upid"] == upid)
    assert shape_differences(CLUSTER_TASKS[0], running) == []
    status = prox.nodes("pve1").tasks(upid).status.get()
    assert shape_differences(FIXTURE["task_status"]["running"], status) == []
    pvesim.sim.advance(120)
    done = prox.nodes("pve1").tasks(upid).status.get()
    assert shape_differences(FIXTURE["task_status"]["ok"], done) == []
    [archived] = prox.nodes("pve1").tasks.get(source="all", vmid=100)
    assert shape_differences(FIXTURE["node_tasks_archived"]["payload"][0], archived) == []
