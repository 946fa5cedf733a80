"""The snapshot builder on hand-written and fuzzed payloads (no network)."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancer.model import ClusterSnapshot, GuestType
from balancer.pve.errors import SnapshotUnusable
from balancer.pve.snapshot import GUEST_CPU_MAX, build_snapshot
from tests.pve import payloads as p


def build(resources: Any = None, status: Any = None, rules: Any = None,
          options: Any = None) -> ClusterSnapshot:
    return build_snapshot(p.resources() if resources is None else resources,
                          p.status() if status is None else status,
                          rules, options, taken_at=1234.5)


# --- units and fields on a well-formed cluster --------------------------------------------

def test_nodes_keep_pve_units() -> None:
    snap = build()
    assert snap.warnings == ()
    assert [n.name for n in snap.nodes] == ["pve1", "pve2", "pve3"]
    pve1 = snap.node("pve1")
    assert pve1 is not None
    assert (pve1.online, pve1.cpu, pve1.maxcpu, pve1.mem, pve1.maxmem) == (
        True, 0.1523, 32, 40802189312, 135089106944)
    assert pve1.hastate == "online" and not pve1.in_maintenance
    pve2 = snap.node("pve2")
    assert pve2 is not None and pve2.in_maintenance
    assert snap.taken_at == 1234.5
    assert snap.cluster_name == "lab" and snap.quorate


def test_guests_fields() -> None:
    snap = build()
    assert [g.vmid for g in snap.guests] == [100, 101, 102, 200, 9000]
    web = snap.guest(100)
    assert web is not None
    assert web.type is GuestType.QEMU and web.node == "pve1" and web.running
    assert (web.cpu, web.maxcpu, web.mem, web.maxmem) == (0.5, 4, 3 * p.GIB, 8 * p.GIB)
    assert web.memhost == 3_400_000_000 and web.host_memory == 3_400_000_000
    assert web.cpu_cores == 2.0
    assert web.tags == frozenset({"prod", "web"})
    assert web.hastate == "started" and web.ha_managed
    backup = snap.guest(101)
    assert backup is not None and backup.lock == "backup" and not backup.running
    mixed = snap.guest(102)
    assert mixed is not None and mixed.tags == frozenset({"mixed", "case", "spaced"})
    assert mixed.cpu == 1.7  # a VM's own-vCPU share may exceed 1.0
    ct = snap.guest(200)
    assert ct is not None and ct.type is GuestType.LXC and ct.memhost is None
    template = snap.guest(9000)
    assert template is not None and template.template and not template.ha_managed


def test_numbers_as_strings_are_read() -> None:
    res = p.resources()
    res[1]["cpu"] = "0.25"
    res[1]["maxmem"] = "8589934592"
    snap = build(res)
    guest = snap.guest(100)
    assert guest is not None and guest.cpu == 0.25 and guest.maxmem == 8589934592


def test_offline_node_kept_with_zero_usage() -> None:
    res = [e for e in p.resources() if e.get("id") != "node/pve3"]
    res.append(p.node("pve3", status="offline", hastate="unknown"))
    snap = build(res)
    pve3 = snap.node("pve3")
    assert pve3 is not None
    assert (pve3.online, pve3.cpu, pve3.mem) == (False, 0.0, 0)
    assert snap.guest(9000) is not None  # its guests stay visible


def test_corosync_offline_overrides_stale_resources() -> None:
    snap = build(status=p.status(nodes={"pve1": True, "pve2": True, "pve3": False}))
    pve3 = snap.node("pve3")
    assert pve3 is not None and not pve3.online and pve3.cpu == 0.0


def test_standalone_node_is_quorate() -> None:
    res = [e for e in p.resources() if e.get("node") in ("pve1", None)]
    standalone = [{"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 0,
                   "local": 1, "online": 1, "ip": "10.0.0.1", "level": ""}]
    snap = build(res, standalone)
    assert snap.quorate and snap.cluster_name == ""


def test_no_quorum_is_reported() -> None:
    assert build(status=p.status(quorate=0)).quorate is False


# --- HA rules and options ------------------------------------------------------------------

def test_ha_rules_enabled_and_feasible_only() -> None:
    snap = build(rules=p.rules())
    assert [r.name for r in snap.node_affinity] == ["web-on-fast"]
    fast = snap.node_affinity[0]
    assert fast.vmids == frozenset({100, 102})
    assert fast.nodes == ("pve1", "pve2", "pve3")  # by priority, then name
    assert fast.strict is True
    names = {r.name: r for r in snap.resource_affinity}
    assert set(names) == {"db-apart", "together"}  # "off" disabled, "broken" has errors
    assert names["db-apart"].positive is False and names["db-apart"].vmids == {101, 200}
    assert names["together"].positive is True
    assert any("broken" in w for w in snap.warnings)


def test_ha_rules_garbage_entries_are_skipped_with_warnings() -> None:
    rules = [
        "not a rule",
        {"type": "node-affinity", "resources": "vm:1", "nodes": "pve1"},  # no name
        {"rule": "r1", "type": "node-affinity", "resources": "vm:x,vm:5", "nodes": "pve1:y,pve2"},
        {"rule": "r2", "type": "resource-affinity", "affinity": "sideways", "resources": "vm:1"},
        {"rule": "r3", "type": "future-kind", "resources": "vm:1"},
        {"rule": "r4", "type": "node-affinity", "resources": None, "nodes": "pve1"},
        {"rule": "r5", "type": "node-affinity", "resources": "vm:7", "nodes": "pve1",
         "disable": "maybe"},
    ]
    snap = build(rules=rules)
    assert [(r.name, r.vmids, r.nodes, r.strict) for r in snap.node_affinity] == [
        ("r1", frozenset({5}), ("pve2",), False)]
    assert snap.resource_affinity == ()
    assert len(snap.warnings) >= 6


@pytest.mark.parametrize(("crs", "expected"), [
    (None, False),
    ("ha=static", False),
    ("ha=static,ha-auto-rebalance=1", True),
    ("ha=dynamic,ha-auto-rebalance=0,ha-auto-rebalance-threshold=30", False),
    ({"ha": "static", "ha-auto-rebalance": 1}, True),
    ({"ha": "static", "ha-auto-rebalance": "0"}, False),
    # pve-ha-manager Manager.pm: the rebalancer only runs under the static/dynamic scheduler.
    ({"ha-auto-rebalance": 1}, False),
    ({"ha": "basic", "ha-auto-rebalance": 1}, False),
])
def test_ha_auto_rebalance_from_crs(crs: Any, expected: bool) -> None:
    assert build(options=p.options(crs)).ha_auto_rebalance is expected


def test_auto_rebalance_under_the_basic_scheduler_is_reported() -> None:
    snap = build(options=p.options({"ha-auto-rebalance": 1}))
    assert any("scheduler is 'basic'" in w for w in snap.warnings)


@pytest.mark.parametrize("disable", [1, 0, "0", None])
def test_a_rule_with_disable_set_is_disabled_whatever_its_value(disable: Any) -> None:
    rule = {"rule": "apart", "type": "resource-affinity", "affinity": "negative",
            "resources": "vm:100,vm:102", "disable": disable}
    assert build(rules=[rule]).resource_affinity == ()


def test_generated_group_rule_with_null_strict_is_not_strict_and_not_warned() -> None:
    rule = {"rule": "ha-group-fast", "type": "node-affinity", "resources": "vm:100",
            "nodes": "pve1", "strict": None}
    snap = build(rules=[rule])
    assert [r.strict for r in snap.node_affinity] == [False] and snap.warnings == ()


# --- what must skip the cycle --------------------------------------------------------------

def _with(index: int, **changes: Any) -> list[dict[str, Any]]:
    res = p.resources()
    res[index].update(changes)
    return res


NODE1 = 6  # index of node/pve1 in payloads.resources()


@pytest.mark.parametrize("changes", [
    {"cpu": None}, {"cpu": float("nan")}, {"cpu": -0.1}, {"cpu": 7.0}, {"maxcpu": 0},
    {"maxmem": "lots"}, {"mem": -5}, {"mem": 10**15}, {"maxcpu": float("inf")},
])
def test_online_node_without_usable_numbers_is_unusable(changes: dict[str, Any]) -> None:
    with pytest.raises(SnapshotUnusable, match="pve1"):
        build(_with(NODE1, **changes))


def test_duplicate_vmids_are_unusable() -> None:
    res = p.resources()
    res.append(p.vm(100, "pve3"))
    with pytest.raises(SnapshotUnusable, match="100"):
        build(res)


@pytest.mark.parametrize("bad", [None, {}, "x", 5])
def test_wrong_top_level_shapes_are_unusable(bad: Any) -> None:
    with pytest.raises(SnapshotUnusable):
        build_snapshot(bad, p.status())
    with pytest.raises(SnapshotUnusable):
        build_snapshot(p.resources(), bad)


def test_unknown_quorum_is_unusable() -> None:
    status = p.status()
    status[0]["quorate"] = "perhaps"
    with pytest.raises(SnapshotUnusable, match="quorate"):
        build(status=status)


def test_bad_guest_is_left_out_with_warning() -> None:
    res = _with(1, cpu=float("nan"))  # vm 100
    res = [*res, {"id": "openvz/5", "vmid": 5, "type": "openvz", "node": "pve1"}]
    snap = build(res)
    assert snap.guest(100) is None
    assert snap.guest(5) is None
    assert any("guest 100" in w for w in snap.warnings)
    assert any("openvz" in w for w in snap.warnings)


def test_guest_with_garbage_tags_or_lock_is_left_out() -> None:
    res = p.resources()
    res[1]["tags"] = ["prod"]
    res[3]["lock"] = 1
    snap = build(res)
    assert snap.guest(100) is None and snap.guest(102) is None


def test_guest_on_unknown_node_is_left_out() -> None:
    res = p.resources()
    res.append(p.vm(300, "ghost"))
    snap = build(res)
    assert snap.guest(300) is None and any("ghost" in w for w in snap.warnings)
    [ghost] = snap.unreadable_guests
    assert (ghost.vmid, ghost.node) == (300, None)  # could be anywhere


def test_left_out_guests_keep_what_is_readable_for_anti_affinity() -> None:
    res = p.resources()
    res[1]["cpu"] = float("nan")  # vm 100 on pve1, tags prod;web
    res[3]["tags"] = ["plb_anti_affinity_db"]  # vm 102 on pve1: tags unreadable
    res.append({"id": "qemu/x", "vmid": "x", "type": "qemu", "node": "pve3",
                "tags": "plb_anti_affinity_db"})
    snap = build(res)
    found = {(u.vmid, u.node, u.tags) for u in snap.unreadable_guests}
    assert found == {(100, "pve1", frozenset({"prod", "web"})), (102, "pve1", None),
                     (None, "pve3", frozenset({"plb_anti_affinity_db"}))}


# --- fuzzing -------------------------------------------------------------------------------

GARBAGE = st.one_of(
    st.none(), st.booleans(), st.just(""), st.text(max_size=6),
    st.sampled_from(["0.5", "12", "-3", "nan", "inf", "1e400", " 7 ", "0x10"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
)
KEYS = st.sampled_from(["id", "vmid", "node", "type", "status", "cpu", "maxcpu", "mem", "maxmem",
                        "memhost", "template", "tags", "lock", "hastate", "name"])


@st.composite
def mutated_resources(draw: st.DrawFn) -> list[Any]:
    res: list[Any] = copy.deepcopy(p.resources())
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        action = draw(st.sampled_from(["set", "drop", "dup", "junk", "type", "negate"]))
        if not res:
            break
        index = draw(st.integers(min_value=0, max_value=len(res) - 1))
        entry = res[index]
        if action == "junk":
            res.insert(index, draw(GARBAGE))
            continue
        if not isinstance(entry, dict):
            continue
        if action == "set":
            entry[draw(KEYS)] = draw(GARBAGE)
        elif action == "drop":
            entry.pop(draw(KEYS), None)
        elif action == "dup":
            res.append(copy.deepcopy(entry))
        elif action == "type":
            entry["type"] = draw(st.sampled_from(["qemu", "lxc", "node", "openvz", "storage",
                                                  None, 3]))
        elif action == "negate":
            key = draw(st.sampled_from(["cpu", "mem", "maxmem", "maxcpu", "memhost"]))
            if isinstance(entry.get(key), int | float):
                entry[key] = -entry[key] - 1
    return res


@st.composite
def mutated_status(draw: st.DrawFn) -> Any:
    status: list[Any] = copy.deepcopy(p.status())
    if draw(st.booleans()):
        entry = status[draw(st.integers(min_value=0, max_value=len(status) - 1))]
        entry[draw(st.sampled_from(["quorate", "name", "online", "type"]))] = draw(GARBAGE)
    return status


@st.composite
def mutated_rules(draw: st.DrawFn) -> Any:
    rules: list[Any] = copy.deepcopy(p.rules())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        entry = rules[draw(st.integers(min_value=0, max_value=len(rules) - 1))]
        key = draw(st.sampled_from(["rule", "type", "resources", "nodes", "strict", "affinity",
                                    "disable", "errors"]))
        entry[key] = draw(st.one_of(GARBAGE, st.sampled_from(
            ["vm:1,ct:x", "pve1:2,,pve2:-1", "vm:", "::", "positive", "negative"])))
    return rules if draw(st.integers(min_value=0, max_value=9)) else draw(GARBAGE)


def assert_sane(snap: ClusterSnapshot) -> None:
    names = [n.name for n in snap.nodes]
    assert len(names) == len(set(names)) and all(isinstance(n, str) and n for n in names)
    assert any(n.online for n in snap.nodes)
    for n in snap.nodes:
        for value in (n.maxcpu, n.mem, n.maxmem):
            assert type(value) is int and value >= 0
        assert type(n.cpu) is float and math.isfinite(n.cpu)
        if n.online:
            assert 0.0 <= n.cpu <= 1.0 and n.maxcpu >= 1 and n.maxmem >= 1
            assert n.mem <= n.maxmem
        else:
            assert n.cpu == 0.0 and n.mem == 0
        assert n.hastate is None or isinstance(n.hastate, str)
    vmids = [g.vmid for g in snap.guests]
    assert len(vmids) == len(set(vmids))
    for g in snap.guests:
        assert type(g.vmid) is int and g.vmid >= 1
        assert g.node in names and isinstance(g.type, GuestType)
        assert type(g.cpu) is float and math.isfinite(g.cpu) and 0.0 <= g.cpu <= GUEST_CPU_MAX
        assert type(g.maxcpu) is float and math.isfinite(g.maxcpu) and g.maxcpu > 0
        assert type(g.mem) is int and g.mem >= 0 and type(g.maxmem) is int and g.maxmem >= 0
        assert g.memhost is None or (type(g.memhost) is int and g.memhost >= 0)
        if g.running:
            assert g.maxmem >= 1
        assert isinstance(g.status, str) and isinstance(g.template, bool)
        assert all(t and t == t.lower() and not any(c in t for c in ";, ") for t in g.tags)
        assert g.lock is None or isinstance(g.lock, str)
        assert g.hastate is None or isinstance(g.hastate, str)
    for rule in snap.node_affinity:
        assert rule.vmids and all(type(v) is int for v in rule.vmids)
        assert rule.nodes and all(isinstance(n, str) and n for n in rule.nodes)
    for pair_rule in snap.resource_affinity:
        assert pair_rule.vmids and isinstance(pair_rule.positive, bool)
    assert isinstance(snap.quorate, bool) and isinstance(snap.ha_auto_rebalance, bool)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=mutated_resources(), status=mutated_status(), rules=mutated_rules(),
       options=st.one_of(st.just(p.options("ha=static,ha-auto-rebalance=1")), GARBAGE,
                         st.builds(p.options, GARBAGE)))
def test_fuzzed_payloads_give_sane_snapshot_or_unusable(resources: Any, status: Any,
                                                        rules: Any, options: Any) -> None:
    try:
        snap = build_snapshot(resources, status, rules, options, taken_at=1.0)
    except SnapshotUnusable as exc:
        # The builder turns its own crashes into SnapshotUnusable too; those carry the cause.
        assert exc.__cause__ is None, f"builder crashed: {exc}"
        return
    assert_sane(snap)


def test_fuzz_baseline_is_sane() -> None:
    """The unmutated payload passes the same checks (so the fuzz test can fail)."""
    assert_sane(build(rules=p.rules(), options=p.options("ha=static")))


def test_repeated_warnings_are_logged_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    from balancer.pve import snapshot as module

    module._last_logged.clear()
    with caplog.at_level(logging.WARNING, logger="balancer.pve.snapshot"):
        module._log_warnings(("guest 5: cpu is nan; left out",))
        module._log_warnings(("guest 5: cpu is nan; left out", "guest 6: lock is 1; left out"))
    assert [r.getMessage() for r in caplog.records] == [
        "snapshot: guest 5: cpu is nan; left out", "snapshot: guest 6: lock is 1; left out"]


def test_an_online_member_missing_from_resources_skips_the_cycle() -> None:
    """Issue 20.8: its guests would silently be missing (partners, pins, load)."""
    res = [e for e in p.resources() if e.get("id") != "node/pve3"
           and e.get("node") != "pve3"]
    with pytest.raises(SnapshotUnusable, match=r"pve3 online in /cluster/status but not in"):
        build(res)
    offline = p.status(nodes={"pve1": True, "pve2": True, "pve3": False})
    assert [n.name for n in build(res, offline).nodes] == ["pve1", "pve2"]
