"""PVE's migrate precondition, read as PVE writes it (issue 13): every other node is keyed in
`not_allowed_nodes`, `{}` when nothing blocks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from balancer.pve.parse import parse_precondition
from tests.conformance.shape import shape_differences
from tests.support.pvesim_server import RunningSim

FIXTURE = json.loads((Path(__file__).parent / "fixtures" /
                      "qemu-migrate-precondition.json").read_text())


def _payload(case: str) -> dict[str, Any]:
    return FIXTURE["cases"][case]["payload"]


def test_a_clean_vm_may_go_to_every_other_node() -> None:
    pre = parse_precondition(_payload("clean"), "pve1", 100)
    assert pre.refusal("pve2") is None and pre.refusal("pve3") is None
    assert pre.running and pre.blockers == ()


def test_only_the_node_with_a_reason_is_refused() -> None:
    pre = parse_precondition(_payload("storage_missing_on_pve3"), "pve1", 102)
    assert pre.refusal("pve2") is None
    assert pre.refusal("pve3") == "target pve3 not allowed (storage not available there: nfs-a)"
    assert pre.blockers == ()


def test_pvesim_serves_the_same_shape_whatever_the_target(pvesim: RunningSim) -> None:
    """SMALL_SCENARIO's VM 100 on pve1 is the fixture's `clean` input."""
    prox = pvesim.proxmox()
    served = prox.nodes("pve1").qemu(100).migrate.get()
    assert shape_differences(_payload("clean"), served) == []
    assert served["not_allowed_nodes"] == {"pve2": {}, "pve3": {}}
    assert sorted(served["allowed_nodes"]) == ["pve2", "pve3"]
    for target in ("pve2", "pve3", "nosuchnode"):  # PVE checks the format, then ignores it
        assert prox.nodes("pve1").qemu(100).migrate.get(target=target) == served


def test_an_attached_local_disk_refuses_every_target() -> None:
    pre = parse_precondition(_payload("local_disk"), "pve1", 101)
    assert pre.local_disks == ("local-lvm:vm-101-disk-0",)
    assert pre.refusal("pve2") == pre.refusal("pve3") == "local disks: local-lvm:vm-101-disk-0"


def test_raw_passthrough_refuses_every_target() -> None:
    pre = parse_precondition(_payload("passthrough"), "pve1", 103)
    assert pre.local_resources == ("hostpci0",) and not pre.allows("pve2")


def test_a_mapped_device_that_cannot_live_migrate_refuses_every_target() -> None:
    pre = parse_precondition(_payload("mapped_not_live"), "pve1", 103)
    assert pre.local_resources == ("hostpci0",)
    assert pre.refused_nodes == {
        "pve3": "target pve3 not allowed (mapped resources missing there: hostpci0)"}
    assert not pre.allows("pve2") and not pre.allows("pve3")


def test_an_ha_vm_without_positive_partners_may_move() -> None:
    pre = parse_precondition(_payload("ha_managed_clean"), "pve1", 100)
    assert pre.allows("pve2") and pre.allows("pve3")
