"""Guest checks: every reason a guest is not a candidate, by rule name."""

from typing import Any

import pytest

from balancer.engine import Rule
from balancer.engine.eligibility import guest_rejections
from balancer.model import Guest

from .builders import (
    config,
    context,
    ct,
    node,
    node_affinity,
    resource_affinity,
    snapshot,
    vm,
)

NODES = [node("pve1"), node("pve2")]


def rules_for(guest: Guest, **kwargs: Any) -> list[str]:
    snap_kwargs = {k: kwargs.pop(k) for k in ("node_affinity", "resource_affinity",
                                              "ha_auto_rebalance") if k in kwargs}
    ctx = context(snapshot(NODES, [guest], **snap_kwargs), **kwargs)
    return [r.rule for r in guest_rejections(guest, ctx)]


@pytest.mark.parametrize(("guest", "extra", "expected"), [
    pytest.param(ct(101), {}, [Rule.CONTAINER], id="container"),
    pytest.param(vm(101, template=True), {}, [Rule.TEMPLATE], id="template"),
    pytest.param(vm(101, lock="backup"), {}, [Rule.LOCKED], id="locked"),
    pytest.param(vm(101, status="stopped"), {}, [Rule.NOT_RUNNING], id="stopped"),
    pytest.param(vm(101, status="paused"), {}, [Rule.NOT_RUNNING], id="paused"),
    pytest.param(vm(101, status="unknown"), {}, [Rule.STATUS_UNKNOWN], id="unknown-status"),
    pytest.param(vm(101, tags={"pve-balancer-ignore"}), {}, [Rule.EXCLUDED_TAG],
                 id="excluded-tag"),
    pytest.param(vm(101, tags={"plb_ignore_vm"}), {}, [Rule.PLB_IGNORE], id="plb-ignore"),
    pytest.param(vm(101, tags={"plb_affinity_web"}), {}, [Rule.PLB_AFFINITY],
                 id="plb-affinity"),
    pytest.param(vm(101), {"blocked": {101: "cooldown until 12:03:10"}}, [Rule.BLOCKED],
                 id="blocked"),
    pytest.param(vm(101), {"node_affinity": (node_affinity("pin", 101, strict=True),)},
                 [Rule.NODE_AFFINITY], id="node-affinity-strict"),
    pytest.param(vm(101), {"node_affinity": (node_affinity("prefer", 101, strict=False),)},
                 [Rule.NODE_AFFINITY], id="node-affinity-non-strict"),
    pytest.param(vm(101), {"resource_affinity": (resource_affinity("t", 101, 9, positive=True),)},
                 [Rule.POSITIVE_AFFINITY], id="positive-resource-affinity"),
    pytest.param(vm(101, hastate="migrate"), {}, [Rule.HA_BUSY], id="ha-migrating"),
    pytest.param(vm(101, hastate="request_start"), {}, [Rule.HA_BUSY], id="ha-request-pending"),
    pytest.param(vm(101, hastate="started"), {"ha_auto_rebalance": True}, [Rule.HA_MANAGED],
                 id="ha-left-to-pve"),
])
def test_guest_check_rejects(guest: Guest, extra: dict[str, Any], expected: list[str]) -> None:
    assert rules_for(guest, **extra) == expected


@pytest.mark.parametrize(("guest", "extra"), [
    pytest.param(vm(101), {}, id="plain-running-vm"),
    pytest.param(vm(101, hastate="started"), {}, id="ha-without-auto-rebalance"),
    pytest.param(vm(101, hastate="started"),
                 {"ha_auto_rebalance": True, "cfg": config(leave_ha_to_pve=False)},
                 id="ha-auto-rebalance-but-not-left-to-pve"),
    pytest.param(vm(101), {"resource_affinity": (resource_affinity("a", 101, 9, positive=False),)},
                 id="anti-affinity-is-a-target-rule-not-an-exclusion"),
    pytest.param(vm(101, tags={"plb_pin_pve2"}), {}, id="pin-is-a-target-rule"),
    pytest.param(vm(101, tags={"plb_ignore_vm"}), {"cfg": config(proxlb_tags=False)},
                 id="plb-tags-off"),
    pytest.param(vm(101), {"blocked": {102: "cooldown"}}, id="another-vm-blocked"),
])
def test_guest_check_passes(guest: Guest, extra: dict[str, Any]) -> None:
    assert rules_for(guest, **extra) == []


def test_all_failures_are_reported_with_their_numbers_and_reasons() -> None:
    guest = vm(101, status="stopped", lock="snapshot", template=True, tags={"plb_ignore"})
    ctx = context(snapshot(NODES, [guest]), blocked={101: "backoff after 2 failures"})
    found = guest_rejections(guest, ctx)
    assert [r.rule for r in found] == [Rule.NOT_RUNNING, Rule.TEMPLATE, Rule.LOCKED,
                                       Rule.BLOCKED, Rule.PLB_IGNORE]
    assert found[2].message == "locked: vm 101 is locked (snapshot)"
    assert "backoff after 2 failures" in found[3].message
    assert all(r.subject == "vm 101" for r in found)
