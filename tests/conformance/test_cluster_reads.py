"""`/cluster/resources`, `/cluster/status` and `/cluster/options` as PVE writes them, through
the snapshot builder; and pvesim serving the same shapes. Fixtures: fixtures/cluster.json
(each case names the PVE function and commit it is derived from)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from balancer.model import ClusterSnapshot, GuestType
from balancer.pve.errors import SnapshotUnusable
from balancer.pve.snapshot import build_snapshot
from tests.conformance.shape import shape_differences
from tests.support.pvesim_server import RunningSim

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cluster.json").read_text())
R1: list[dict[str, Any]] = FIXTURE["cases"]["R1"]["payload"]
S1: list[dict[str, Any]] = FIXTURE["status"]["S1"]["payload"]
O1: dict[str, Any] = FIXTURE["options"]["O1"]["payload"]
#: Keys PVE adds only when the guest's config or HA has them.
OPTIONAL_GUEST_KEYS = {"tags", "lock", "pool", "hastate"}


def build(resources: Any = None, status: Any = None, options: Any = None) -> ClusterSnapshot:
    return build_snapshot(copy.deepcopy(R1 if resources is None else resources),
                          copy.deepcopy(S1 if status is None else status), None,
                          copy.deepcopy(O1 if options is None else options), taken_at=1.0)


def with_entry(entry_id: str, **changes: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(R1)
    for entry in out:
        if entry["id"] == entry_id:
            entry.update(changes)
    return out


def test_nodes() -> None:
    snap = build()
    assert snap.warnings == () and snap.cluster_name == "lab" and snap.quorate
    assert [(n.name, n.online) for n in snap.nodes] == [
        ("pve1", True), ("pve2", True), ("pve3", False)]
    pve1 = snap.node("pve1")
    assert pve1 is not None
    assert (pve1.cpu, pve1.maxcpu, pve1.mem, pve1.maxmem, pve1.hastate) == (
        0.1523, 32, 40802189312, 135089106944, "online")
    assert pve1.memory_ratio == pytest.approx(0.30204, abs=1e-5)
    pve3 = snap.node("pve3")
    assert pve3 is not None and (pve3.maxcpu, pve3.maxmem, pve3.hastate) == (0, 0, "unknown")


def test_guests() -> None:
    snap = build()
    guests = {g.vmid: g for g in snap.guests}
    assert sorted(guests) == [100, 101, 102, 103, 9000]
    web = guests[100]
    assert (web.type, web.node, web.status, web.running) == (GuestType.QEMU, "pve1", "running",
                                                            True)
    assert (web.maxcpu, web.cpu_cores, web.maxmem, web.host_memory) == (
        4.0, pytest.approx(0.2924), 8589934592, 3489660928)
    assert web.tags == {"a", "b"} and web.hastate == "started" and web.ha_managed
    cache = guests[102]  # cpulimit 1.5, no cores: maxcpu 1.5
    assert (cache.type, cache.maxcpu, cache.cpu_cores) == (GuestType.LXC, 1.5, pytest.approx(0.6))
    assert cache.memhost is None and cache.host_memory == 268435456  # memhost 0: not measured
    assert guests[101].status == "stopped" and guests[101].memhost is None
    assert guests[103].status == "unknown" and guests[103].maxmem == 0
    assert guests[9000].template and not guests[9000].running
    assert snap.unreadable_guests == ()


def test_a_containers_negative_first_sample_is_kept_as_zero() -> None:
    snap = build(with_entry("lxc/102", cpu=-0.04))
    cache = snap.guest(102)
    assert cache is not None and cache.cpu == 0.0 and snap.unreadable_guests == ()


def test_a_vm_whose_cgroup_read_failed_counts_its_mem() -> None:
    snap = build(with_entry("qemu/100", memhost=0))
    web = snap.guest(100)
    assert web is not None and web.memhost is None and web.host_memory == 3489660928


def test_an_ha_resource_the_crm_has_not_seen_is_hands_off() -> None:
    snap = build(with_entry("qemu/100", hastate=None))
    web = snap.guest(100)
    assert web is not None and web.hastate == "unknown" and web.ha_managed


def test_an_offline_nodes_stale_guests_are_not_running() -> None:
    case = FIXTURE["cases"]["R1b_node_offline_under_5_minutes"]
    resources = [case["node"] if e["id"] == "node/pve3" else
                 case["guest"] if e["id"] == "qemu/103" else e for e in copy.deepcopy(R1)]
    snap = build(resources)
    stale = snap.guest(103)
    assert stale is not None and stale.status == "unknown" and not stale.running
    pve3 = snap.node("pve3")
    assert pve3 is not None and not pve3.online and pve3.maxcpu == 16


def test_a_node_without_numbers_names_the_missing_privilege() -> None:
    case = FIXTURE["cases"]["R1c_no_sys_audit_on_node"]
    resources = [case["node"] if e["id"] == "node/pve1" else e for e in copy.deepcopy(R1)]
    with pytest.raises(SnapshotUnusable, match=r"lack Sys.Audit on /nodes/pve1"):
        build(resources)


@pytest.mark.parametrize(("case", "quorate", "online"), [
    ("S1", True, {"pve1": True, "pve2": True, "pve3": False}),
    ("S2_two_nodes_one_down", False, {"pve1": True, "pve2": False}),
    ("S3_standalone", True, {"pve1": True}),
])
def test_cluster_status(case: str, quorate: bool, online: dict[str, bool]) -> None:
    from balancer.pve.parse import parse_cluster_status

    status = parse_cluster_status(FIXTURE["status"][case]["payload"])
    assert status.quorate is quorate and status.online == online


@pytest.mark.parametrize(("case", "auto"), [
    ("O1", True), ("O2_no_sys_audit", False), ("O3_basic_scheduler", False),
])
def test_cluster_options(case: str, auto: bool) -> None:
    from balancer.pve.parse import parse_cluster_options

    assert parse_cluster_options(FIXTURE["options"][case]["payload"]).ha_auto_rebalance is auto


# --- pvesim serves the same shapes ------------------------------------------------------------

def _entry(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return next(e for e in entries if all(e.get(k) == v for k, v in match.items()))


def _without(entry: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in keys}


def test_pvesim_resources_have_pves_shape(pvesim: RunningSim) -> None:
    served = pvesim.proxmox().cluster.resources.get()
    pairs = [
        (_entry(R1, id="qemu/100"), _entry(served, type="qemu", status="running")),
        (_entry(R1, id="qemu/9000"), _entry(served, type="qemu", template=1)),
        (_entry(R1, id="lxc/102"), _entry(served, type="lxc", status="running")),
        (_entry(R1, id="node/pve1"), _entry(served, type="node", status="online")),
    ]
    for expected, actual in pairs:
        assert shape_differences(_without(expected, OPTIONAL_GUEST_KEYS),
                                 _without(actual, OPTIONAL_GUEST_KEYS)) == [], actual["id"]


def test_pvesim_status_and_options_have_pves_shape(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    status = prox.cluster.status.get()
    assert shape_differences(S1[0], _entry(status, type="cluster")) == []
    assert shape_differences(S1[1], _entry(status, type="node", local=1)) == []
    pvesim.sim.set_option_crs(ha="static", ha_auto_rebalance=True)
    options = prox.cluster.options.get()
    assert options["crs"]["ha"] == "static" and options["crs"]["ha-auto-rebalance"] == 1
    assert {"description", "mac_prefix", "allowed-tags"} <= set(options)
