"""Pure parsers: tasks, HA status, running migrations, precondition, VM status."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancer.pve.errors import SnapshotUnusable
from balancer.pve.parse import (
    find_running_migrations,
    flag,
    integer,
    number,
    parse_cluster_options,
    parse_cluster_status,
    parse_ha_status,
    parse_precondition,
    parse_task_status,
    parse_tasks,
    parse_vm_status,
    split_tags,
)
from tests.pve import payloads as p

OUR = "balancer@pve!balancer"


def upid(node: str, kind: str, vmid: int, user: str = OUR, start: int = 0x66A0B1C2) -> str:
    return f"UPID:{node}:0003A2F1:01B2C3D4:{start:08X}:{kind}:{vmid}:{user}:"


@pytest.mark.parametrize(("raw", "expected"), [
    (1, 1.0), (0.5, 0.5), ("0.25", 0.25), (" 3 ", 3.0), (True, None), (None, None),
    (float("nan"), None), (float("inf"), None), ("nan", None), ("1e400", None), ([], None),
    (10**400, None),
])
def test_number(raw: Any, expected: float | None) -> None:
    assert number(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (32, 32), (32.0, 32), ("32", 32), (32.5, None), ("x", None), (False, None),
])
def test_integer(raw: Any, expected: int | None) -> None:
    assert integer(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (1, True), (0, False), ("1", True), ("0", False), (True, True), (2, None), ("maybe", None),
    (None, None),
])
def test_flag(raw: Any, expected: bool | None) -> None:
    assert flag(raw) is expected


def test_split_tags_accepts_every_pve_separator() -> None:
    assert split_tags("Prod;web, DB  x;;") == frozenset({"prod", "web", "db", "x"})


def test_cluster_status_membership() -> None:
    status = parse_cluster_status(p.status(nodes={"pve1": True, "pve2": False}))
    assert (status.name, status.quorate, status.standalone) == ("lab", True, False)
    assert status.online == {"pve1": True, "pve2": False}


def test_cluster_status_two_cluster_entries_is_unusable() -> None:
    status = p.status()
    status.append(dict(status[0]))
    with pytest.raises(SnapshotUnusable):
        parse_cluster_status(status)


def test_tasks_user_comes_from_upid_with_token() -> None:
    tasks = parse_tasks([
        {"upid": upid("pve1", "qmigrate", 100), "node": "pve1", "type": "qmigrate", "id": "100",
         "user": "balancer@pve", "tokenid": "balancer", "starttime": 5},
        {"upid": "garbage", "node": "pve2", "type": "qmigrate", "id": "101",
         "user": "root@pam", "starttime": 6, "endtime": 9, "status": "OK"},
        {"no": "upid"}, "junk",
    ])
    assert [(t.user, t.vmid, t.running) for t in tasks] == [
        (OUR, 100, True), ("root@pam", 101, False)]


def test_task_status_ok_and_warnings() -> None:
    u = upid("pve1", "qmigrate", 100)
    done = parse_task_status({"status": "stopped", "exitstatus": "WARNINGS: 2",
                              "type": "qmigrate", "id": "100", "node": "pve1"}, u)
    assert done.ok and not done.running and done.user == OUR
    failed = parse_task_status({"status": "stopped", "exitstatus": "migration aborted"}, u)
    assert not failed.ok and failed.node == "pve1"
    running = parse_task_status({"status": "running"}, u)
    assert running.running and not running.ok


def test_running_migrations_merge_all_sources() -> None:
    tasks = parse_tasks([
        {"upid": upid("pve1", "qmigrate", 100), "node": "pve1", "type": "qmigrate", "id": "100",
         "starttime": 1},
        {"upid": upid("pve2", "qmigrate", 105), "node": "pve2", "type": "qmigrate", "id": "105",
         "starttime": 1, "endtime": 2, "status": "OK"},  # finished: not in flight
        {"upid": upid("pve2", "vzdump", 101), "node": "pve2", "type": "vzdump", "id": "101",
         "starttime": 1},  # not a migration
    ])
    ha = parse_ha_status({"manager_status": {"master_node": "pve1", "service_status": {
        "vm:102": {"node": "pve1", "state": "migrate", "target": "pve3", "uid": "x"},
        "vm:100": {"node": "pve1", "state": "started"},
        "ct:200": {"node": "pve2", "state": "relocate", "target": "pve1"},
    }}})
    resources = [p.vm(100, "pve1", lock="migrate"), p.vm(103, "pve2", hastate="migrate"),
                 p.vm(104, "pve2")]
    moving = {m.vmid: m for m in find_running_migrations(tasks, ha, resources)}
    assert set(moving) == {100, 102, 103, 200}
    assert moving[100].evidence == ("task:qmigrate", "lock")
    assert moving[100].upid == upid("pve1", "qmigrate", 100) and moving[100].user == OUR
    assert (moving[102].source, moving[102].target) == ("pve1", "pve3")
    assert moving[200].evidence == ("ha:relocate",)
    assert moving[103].evidence == ("hastate:migrate",)


def test_ha_status_tolerates_empty_and_garbage() -> None:
    assert parse_ha_status({}).services == {}
    assert parse_ha_status(None).master_node is None
    status = parse_ha_status({"manager_status": {"node_status": {"pve2": "maintenance", "x": 1},
                                                 "service_status": {"vm:1": "bad"}}})
    assert status.node_status == {"pve2": "maintenance"} and status.services == {}


#: Shape of qemu-server's migrate_vm_precondition: every other node keyed, `{}` when clean.
PRE_OK: dict[str, Any] = {
    "running": 1, "allowed_nodes": ["pve2", "pve3"],
    "not_allowed_nodes": {"pve2": {}, "pve3": {}},
    "local_disks": [], "local_resources": [], "mapped-resources": [],
    "mapped-resource-info": {}, "has-dbus-vmstate": 1,
}


def test_precondition_allowed() -> None:
    pre = parse_precondition(PRE_OK, "pve1", 100)
    assert pre.running and pre.blockers == () and pre.refused_nodes == {}
    assert pre.allows("pve2") and pre.allows("pve3")


def test_precondition_local_disk_blocks_but_cloudinit_does_not() -> None:
    payload = dict(PRE_OK, local_disks=[
        {"volid": "local-lvm:vm-100-disk-0", "size": 1, "is_attached": 1, "drivename": "scsi0"},
        {"volid": "local-lvm:vm-100-cloudinit", "is_cloudinit": 1}])
    pre = parse_precondition(payload, "pve1", 100)
    assert pre.local_disks == ("local-lvm:vm-100-disk-0",)
    assert pre.refusal("pve2") == pre.refusal("pve3") == "local disks: local-lvm:vm-100-disk-0"


def test_precondition_live_mapped_device_is_fine_raw_passthrough_is_not() -> None:
    payload = dict(PRE_OK, local_resources=["hostpci0", "usb0"],
                   **{"mapped-resource-info": {"hostpci0": {"name": "gpu", "live-migration": 1}}})
    pre = parse_precondition(payload, "pve1", 100)
    assert not pre.allows("pve2") and pre.local_resources == ("usb0",)


def test_precondition_target_not_allowed_explains() -> None:
    payload = dict(PRE_OK, allowed_nodes=["pve3"], not_allowed_nodes={
        "pve2": {"unavailable_storages": ["zfs-a"],
                 "blocking-ha-resources": [{"sid": "vm:102", "cause": "resource-affinity"}]},
        "pve3": {}})
    pre = parse_precondition(payload, "pve1", 100)
    reason = pre.refusal("pve2")
    assert reason is not None
    assert "zfs-a" in reason and "vm:102 (resource-affinity)" in reason
    assert pre.allows("pve3") and pre.blockers == ()
    unknown = parse_precondition(PRE_OK, "pve1", 100)
    assert "pve9" in (unknown.refusal("pve9") or "")


def test_precondition_unreadable_entry_refuses_that_node_only() -> None:
    payload = dict(PRE_OK, not_allowed_nodes={"pve2": "nope", "pve3": {}})
    pre = parse_precondition(payload, "pve1", 100)
    assert not pre.allows("pve2") and pre.allows("pve3")


def test_vm_status_ha_and_lock() -> None:
    status = parse_vm_status({"status": "running", "qmpstatus": "running", "lock": "migrate",
                              "ha": {"managed": 1, "state": "started"}}, "pve1", 100)
    assert status.running and status.lock == "migrate" and status.ha_managed
    assert status.ha_state == "started"
    plain = parse_vm_status({"status": "stopped", "ha": {"managed": 0}}, "pve1", 101)
    assert not plain.running and plain.lock is None and not plain.ha_managed


# --- fuzzing: the other parsers never crash ---------------------------------------------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from(["vm:100", "running", "stopped", "migrate", "qmigrate", "OK",
                               upid("pve1", "qmigrate", 100), "UPID:x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["upid", "type", "id", "node", "status", "endtime", "starttime",
                                 "user", "tokenid", "state", "target", "manager_status",
                                 "service_status", "node_status", "vm:1", "local_disks",
                                 "local_resources", "not_allowed_nodes", "allowed_nodes",
                                 "pve2", "mapped-resource-info", "running", "ha", "managed",
                                 "lock", "vmid", "hastate", "crs", "volid", "is_cloudinit",
                                 "unavailable_storages", "blocking-ha-resources"]),
                                inner, max_size=6)),
    max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=JSON, ha=JSON, resources=JSON, pre=JSON, vm=JSON, options=JSON)
def test_parsers_survive_any_json(tasks: Any, ha: Any, resources: Any, pre: Any, vm: Any,
                                  options: Any) -> None:
    parsed = parse_tasks(tasks)
    moving = find_running_migrations(parsed, parse_ha_status(ha), resources)
    assert all(isinstance(m.vmid, int) for m in moving)
    pre_result = parse_precondition(pre, "pve1", 100)
    verdict = pre_result.refusal("pve2")
    assert verdict is None or isinstance(verdict, str)
    if isinstance(pre, dict) and not isinstance(pre.get("not_allowed_nodes", {}), dict):
        assert verdict is not None  # an unreadable check never passes
    parse_cluster_options(options)
    try:
        parse_vm_status(vm, "pve1", 100)
    except SnapshotUnusable:
        assert not isinstance(vm, dict)


# --- the precondition's other fields, as qemu-server e6352be writes them ----------------------

def test_precondition_positive_ha_partners_would_move_along() -> None:
    payload = dict(PRE_OK, **{"dependent-ha-resources": ["vm:104"]})
    assert "HA would move along: vm:104" in (parse_precondition(payload, "pve1", 100)
                                             .refusal("pve2") or "")
    assert parse_precondition(dict(PRE_OK, **{"dependent-ha-resources": []}), "pve1",
                              100).allows("pve2")


def test_precondition_own_tpm_state_is_copied_by_pve_an_unused_disk_is_ours_to_refuse() -> None:
    tpm = {"volid": "local-lvm:vm-100-disk-1", "is_tpmstate": 1, "is_attached": 1, "cdrom": 0,
           "is_cloudinit": 0, "is_unused": 0, "is_vmstate": 0, "replicate": 1, "shared": 0,
           "drivename": "tpmstate0"}
    unused = dict(tpm, volid="local-lvm:vm-100-disk-2", is_tpmstate=0, is_attached=0,
                  is_unused=1)
    assert parse_precondition(dict(PRE_OK, local_disks=[tpm]), "pve1", 100).allows("pve2")
    refused = parse_precondition(dict(PRE_OK, local_disks=[tpm, unused]), "pve1", 100)
    assert refused.local_disks == ("local-lvm:vm-100-disk-2",)


def test_precondition_mapped_device_without_live_migration_stops_a_running_vm() -> None:
    payload = dict(PRE_OK, **{"mapped-resource-info": {"hostpci0": {"name": "gpu1"}},
                              "mapped-resources": ["hostpci0"]})
    assert parse_precondition(payload, "pve1", 100).local_resources == ("hostpci0",)
    stopped = dict(payload, running=0)
    assert parse_precondition(stopped, "pve1", 100).allows("pve2")


def test_vm_status_ha_resource_without_crm_state_is_unknown() -> None:
    status = parse_vm_status({"status": "running", "ha": {"managed": 1, "state": None}},
                             "pve1", 100)
    assert status.ha_managed and status.ha_state == "unknown"
