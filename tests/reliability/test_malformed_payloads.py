"""Malformed PVE payloads fed through `evaluate` itself (the snapshot builder alone is fuzzed in
tests/pve): missing fields, nulls, strings for numbers, NaN, negative sizes, unknown guest types,
duplicate VMIDs, garbage where a list or object belongs. The simulator cannot send these, so a
small `PveClient` subclass corrupts its real answers on the way in.

Property: never an exception out of evaluate, never a migration of a corrupted guest, from or
to a corrupted node, or to anything that is not a real online node other than the VM's own.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balancer.pve.client import PveClient, ResourcesSerializer
from balancer.pve.parse import flag, integer
from balancer.runtime import Runtime, evaluate
from balancer.runtime.results import CycleResult
from tests.runtime.scenarios import HOT_AND_FULL
from tests.support.pvesim_server import RunningSim
from tests.support.steps import StepDispatcher, runtime_for

pytestmark = pytest.mark.integration

MISSING = object()
#: Values that are wrong wherever they appear (a number-as-text of the same value is not wrong:
#: PVE itself sends some numbers as strings, and the parser accepts them).
HUGE = 1e30
GARBAGE: list[Any] = [MISSING, None, "", "abc", math.nan, math.inf, -math.inf, -1, -5e9, HUGE,
                      {}, [], True, "NaN", [1, 2], {"x": 1}]
AS_TEXT = "as-text"
RESOURCE_FIELDS = ["cpu", "maxcpu", "mem", "maxmem", "status", "node", "vmid", "type", "lock",
                   "template", "hastate", "memhost", "tags", "id", "name"]
STATUS_FIELDS = ["quorate", "online", "type", "name"]
WHOLE = ["cluster/resources", "cluster/status", "cluster/tasks", "cluster/ha/rules",
         "cluster/ha/status/manager_status", "cluster/options", "precondition"]


@dataclass
class Corruption:
    """What one example does to the payloads, and which nodes and guests it made untrustworthy."""

    resources: list[tuple[int, str, Any]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    status: list[tuple[int, str, Any]] = field(default_factory=list)
    whole: dict[str, Any] = field(default_factory=dict)
    bad_nodes: set[str] = field(default_factory=set)
    unknown_membership: set[str] = field(default_factory=set)
    unknown_enum: set[str] = field(default_factory=set)
    bad_vmids: set[int] = field(default_factory=set)
    quorum_unsure: bool = False
    duplicated: bool = False

    def apply(self, path: str, payload: Any) -> Any:
        key = "precondition" if path.endswith("/migrate") else path
        if key in self.whole:
            return copy.deepcopy(self.whole[key])
        if path == "cluster/resources" and isinstance(payload, list):
            return self._resources(copy.deepcopy(payload))
        if path == "cluster/status" and isinstance(payload, list):
            return self._status(copy.deepcopy(payload))
        return payload

    def _resources(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        originals = copy.deepcopy(entries)
        touched: set[tuple[int, str]] = set()
        for index, name, value in self.resources:
            _set(entries[index % len(entries)], name, value)
            touched.add((index % len(entries), name))
        for index, name in sorted(touched):
            self._taint(originals[index], entries[index], name)
        for index in self.duplicates:
            entries.append(copy.deepcopy(entries[index % len(entries)]))
        self.duplicated = _listed_twice(entries)
        return entries

    def _taint(self, before: dict[str, Any], after: dict[str, Any], name: str) -> None:
        """Decide whether the change of `name` makes the entry untrustworthy."""
        kind, node, vmid = before.get("type"), before.get("node"), before.get("vmid")
        old, new = before.get(name, MISSING), after.get(name, MISSING)
        if _same(old, new) or name not in WEIGHT.get(str(kind), ()):
            return
        if name in OPTIONAL and (new is MISSING or new is None or (_unset(old) and _unset(new))):
            return  # left out is how PVE says "not set" (no way to tell it from garbage)
        if name == "tags" and isinstance(new, str):
            return  # any text is a tag list
        if kind == "node" and name == "node" and not (isinstance(new, str) and new):
            return  # named from its "id" ("node/pve1") instead
        if (name == "hastate" and (kind == "node" or isinstance(new, str))) or (
                new == HUGE and name in ("maxcpu", "maxmem", "mem", "memhost")):
            # An HA state PVE does not have (a node's unreadable one becomes "unknown"), or an
            # absurd size: the xfail tests below, not asserted on here.
            self.unknown_enum.add(str(node if kind == "node" else vmid))
            return
        if kind == "node":
            self.bad_nodes.add(str(node))
        else:
            self.bad_vmids.add(int(vmid))

    def _status(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        originals = copy.deepcopy(entries)
        for index, name, value in self.status:
            _set(entries[index % len(entries)], name, value)
        for before, after in zip(originals, entries, strict=True):
            if before.get("type") == "cluster":
                # Quorum is known only from the one cluster entry saying quorate 1.
                self.quorum_unsure = after.get("type") != "cluster" or flag(
                    after.get("quorate")) is not True
            elif before.get("type") == "node" and any(
                    not _same(before.get(k, MISSING), after.get(k, MISSING))
                    for k in ("name", "online", "type")):
                # Unreadable membership falls back to the resource list's status (see the
                # xfail test below): recorded, not asserted on here.
                self.unknown_membership.add(str(before.get("name")))
        return entries


#: Fields PVE leaves out when they are not set.
OPTIONAL = frozenset({"lock", "hastate", "tags", "template", "memhost"})


def _listed_twice(entries: list[dict[str, Any]]) -> bool:
    """Whether a usable VMID or node name now appears twice."""
    guests = [integer(e.get("vmid")) for e in entries if e.get("type") in ("qemu", "lxc")]
    nodes = [e.get("node") for e in entries if e.get("type") == "node"]
    guests = [v for v in guests if v is not None and v > 0]
    nodes = [n for n in nodes if isinstance(n, str) and n]
    return len(set(guests)) < len(guests) or len(set(nodes)) < len(nodes)


#: The fields decisions depend on, per entry type (a garbage display name, or a guest-only
#: field on a node entry, taints nothing).
WEIGHT = {
    "node": frozenset({"type", "node", "status", "cpu", "maxcpu", "mem", "maxmem", "hastate"}),
    "qemu": frozenset({"type", "vmid", "node", "status", "cpu", "maxcpu", "mem", "maxmem",
                       "memhost", "lock", "template", "hastate", "tags"}),
}
WEIGHT["lxc"] = WEIGHT["qemu"]


def _set(entry: dict[str, Any], name: str, value: Any) -> bool:
    """Corrupt one field; whether that changed anything."""
    before = copy.deepcopy(entry)
    if value is MISSING:
        entry.pop(name, None)
    elif value == AS_TEXT:
        if isinstance(entry.get(name), int | float) and not isinstance(entry.get(name), bool):
            entry[name] = str(entry[name])
    else:
        entry[name] = copy.deepcopy(value)
    return not _same(entry.get(name, MISSING), before.get(name, MISSING))


def _same(old: Any, new: Any) -> bool:
    """Equal, or the same number written as text (as PVE itself sometimes sends it)."""
    if old is MISSING or new is MISSING:
        return old is new
    if isinstance(old, int | float) and not isinstance(old, bool) and isinstance(new, str):
        return new == str(old)
    return type(old) is type(new) and (old == new or (old != old and new != new))


def _unset(value: Any) -> bool:
    return value is MISSING or (value in (None, 0, "", "0") and not isinstance(value, bool))


def corruptions() -> st.SearchStrategy[Corruption]:
    values = st.sampled_from([*GARBAGE, AS_TEXT])
    index = st.integers(0, 40)
    return st.builds(
        Corruption,
        resources=st.lists(st.tuples(index, st.sampled_from(RESOURCE_FIELDS), values),
                           max_size=4),
        duplicates=st.lists(index, max_size=1),
        status=st.lists(st.tuples(index, st.sampled_from(STATUS_FIELDS), values), max_size=2),
        whole=st.dictionaries(st.sampled_from(WHOLE),
                              st.sampled_from([None, {}, [], "garbage", 42, [None, "x", 3]]),
                              max_size=1),
    )


class CorruptingClient(PveClient):
    """The real client, with each decoded answer passed through the current corruption. The
    snapshot's `/cluster/resources` is corrupted as bytes and decoded as the client decodes
    PVE's answer (typed, or the generic way when the garbage is off PVE's schema)."""

    corruption: Corruption | None = None

    def get(self, path: str, /, **params: Any) -> Any:
        payload = super().get(path, **params)
        return payload if self.corruption is None else self.corruption.apply(path, payload)

    def resource_entries(self) -> Any:
        if self.corruption is None:
            return super().resource_entries()
        body = json.dumps({"data": self.get("cluster/resources")}).encode()
        return ResourcesSerializer().loads(SimpleNamespace(content=body))


@pytest.fixture
def fuzzed(pvesim_factory: Callable[..., RunningSim],
           redis_url: str) -> tuple[RunningSim, Runtime, CorruptingClient]:
    running = pvesim_factory(HOT_AND_FULL)
    rt = runtime_for(running, redis_url, client_cls=CorruptingClient)
    assert isinstance(rt.client, CorruptingClient)
    return running, rt, rt.client


def fresh_state(rt: Runtime, running: RunningSim) -> None:
    """Every example starts from the same state: an empty store with a warm CPU EMA (so both
    triggers can act at once) and no migration in flight."""
    rt.store.client.flushdb()
    now = rt.clock()
    loads = {n.name: n.cpu for n in running.sim.nodes() if n.online}
    for step in range(4, 0, -1):
        rt.store.ema.update(loads, sampled_at=now - step, alpha=rt.config.balancing.ema_alpha,
                            online=list(loads))


def test_the_uncorrupted_cluster_is_balanced(
    fuzzed: tuple[RunningSim, Runtime, CorruptingClient],
) -> None:
    """The baseline: without corruption this cluster gets a migration, so the property below
    is about decisions that would happen."""
    running, rt, _ = fuzzed
    fresh_state(rt, running)
    assert evaluate(rt, StepDispatcher()).action == "migrate"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(corruption=corruptions())
def test_no_exception_and_no_migration_based_on_corrupted_payloads(
    fuzzed: tuple[RunningSim, Runtime, CorruptingClient], corruption: Corruption,
) -> None:
    running, rt, client = fuzzed
    fresh_state(rt, running)
    dispatch = StepDispatcher()
    client.corruption = corruption
    try:
        result = evaluate(rt, dispatch)
    finally:
        client.corruption = None

    assert result.action in ("skipped", "none", "migrate"), result
    if corruption.duplicated and "cluster/resources" not in corruption.whole:
        assert result.action == "skipped", "a VMID or node listed twice: no decision"
    if corruption.quorum_unsure:
        assert result.action != "migrate", result
    if result.action != "migrate":
        assert dispatch.pending == [] and rt.store.lock.holder() is None
        return
    vmid, source, target = result.vmid, result.source, result.target
    truth = {n.name: n for n in running.sim.nodes()}
    guest = running.sim.guest(vmid)
    assert vmid not in corruption.bad_vmids, result
    assert source not in corruption.bad_nodes and target not in corruption.bad_nodes, result
    assert guest.node == source and guest.status == "running", result
    assert target in truth and truth[target].online and target != source, result
    assert [s.kind for s in dispatch.pending] == ["migrate"]


def _decide_with(fuzzed: tuple[RunningSim, Runtime, CorruptingClient],
                 change: Callable[[str, Any], Any]) -> CycleResult:
    running, rt, client = fuzzed
    fresh_state(rt, running)

    class One(Corruption):
        def apply(self, path: str, payload: Any) -> Any:
            return change(path, copy.deepcopy(payload))

    client.corruption = One()
    try:
        return evaluate(rt, StepDispatcher())
    finally:
        client.corruption = None


def _entry(payload: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return next(e for e in payload if all(e.get(k) == v for k, v in match.items()))


def test_baseline_moves_401_to_pve3(fuzzed: tuple[RunningSim, Runtime, CorruptingClient]) -> None:
    result = _decide_with(fuzzed, lambda path, payload: payload)
    assert (result.vmid, result.source, result.target) == (401, "pve1", "pve3")


def _guest_hastate(path: str, payload: Any) -> Any:
    if path == "cluster/resources":
        _entry(payload, vmid=401)["hastate"] = "abc"
    return payload


def _membership_unreadable(path: str, payload: Any) -> Any:
    if path == "cluster/status":
        _entry(payload, type="node", name="pve3").pop("online")
    return payload


def _node_hastate(path: str, payload: Any) -> Any:
    if path == "cluster/resources":
        _entry(payload, type="node", node="pve3")["hastate"] = 42
    return payload


def _precondition_resources(path: str, payload: Any) -> Any:
    if path.endswith("/migrate"):
        payload["local_resources"] = "hostpci0"
    return payload


def _absurd_sizes(path: str, payload: Any) -> Any:
    if path == "cluster/resources":
        node = _entry(payload, type="node", node="pve3")
        node["maxmem"], node["maxcpu"] = 1e30, 10**9
    return payload


@pytest.mark.parametrize("change", [
    _guest_hastate, _membership_unreadable, _node_hastate, _precondition_resources,
    _absurd_sizes,
], ids=["guest-hastate", "membership", "node-hastate", "precondition", "absurd-sizes"])
def test_garbage_the_readers_must_not_trust(
    fuzzed: tuple[RunningSim, Runtime, CorruptingClient], change: Callable[[str, Any], Any],
) -> None:
    """Each change makes vm 401's move to pve3 (the baseline) rest on a field that is garbage:
    the decision must not be that move."""
    result = _decide_with(fuzzed, change)
    assert (result.vmid, result.target) != (401, "pve3"), result
