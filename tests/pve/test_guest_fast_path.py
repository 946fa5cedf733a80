"""The snapshot's fast path for guest entries (issue 16) reads an entry exactly as the
careful path does, or leaves it to the careful path: never a different guest. The fast path
reads typed entries (balancer/pve/wire.py), whether decoded from the answer's bytes or
converted from a generically decoded dict: both must give the same entry."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.model import GuestType
from balancer.pve.snapshot import _careful_guest, _typical_guest
from balancer.pve.wire import ResourceEntry, as_entry, decode_resources

NODES = {"pve1": True, "pve2": False}

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**51), st.floats(allow_nan=True),
    st.sampled_from([0, 1, 2, 0.5, 1.0, -0.3, 16.0, 4096, "1", "", "running", "0.5"]))


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "node": draw(st.sampled_from(["pve1", "pve2", "pve9", None, 3])),
        "status": draw(st.sampled_from(["running", "stopped", "paused", None, 1])),
        "cpu": draw(st.one_of(st.floats(-1, 20), _values)),
        "maxcpu": draw(st.one_of(st.integers(1, 64), st.floats(0.5, 8), _values)),
        "mem": draw(st.one_of(st.integers(0, 2**36), _values)),
        "maxmem": draw(st.one_of(st.integers(0, 2**36), _values)),
        "name": draw(st.sampled_from(["vm1", None, 7, ["vm"]])),
    }
    for key, options in (("tags", ["a;b", "", "plb_pin_pve1", 5, None]),
                         ("lock", ["backup", "", None, 1]),
                         ("hastate", ["started", "migrate", "weird", None, 2, ["x"]]),
                         ("template", [0, 1, True, "1", 1.0, 2]),
                         ("memhost", [0, 2**30, -1, 2**30 + 0.5, "5", None])):
        if draw(st.booleans()):
            entry[key] = draw(st.sampled_from(options))
    return entry


@settings(max_examples=3000, deadline=None)
@given(entry=entries(), kind=st.sampled_from([GuestType.QEMU, GuestType.LXC]))
def test_the_fast_path_agrees_with_the_careful_one(entry: dict[str, Any],
                                                   kind: GuestType) -> None:
    typed = as_entry(entry)
    if _json_safe(entry):
        decoded = decode_resources(json.dumps({"data": [entry]}).encode())
        assert (decoded or [None]) == [typed], entry
    fast = None if typed is None else _typical_guest(typed, kind, 101, NODES)
    if fast is not None:
        careful, problem = _careful_guest(entry, kind, 101, NODES)
        assert careful == fast, (entry, problem)


def _json_safe(entry: dict[str, Any]) -> bool:
    """NaN and infinities are not JSON (PVE never sends them; `json.dumps` would)."""
    return not any(isinstance(v, float) and not math.isfinite(v) for v in entry.values())


def test_a_typical_entry_takes_the_fast_path() -> None:
    """As pve-manager sends a running VM (pvesim/CONFORMANCE.md, /cluster/resources)."""
    entry = {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve1", "name": "web",
             "status": "running", "cpu": 0.0421, "maxcpu": 4, "mem": 2147483648,
             "maxmem": 4294967296, "memhost": 2254857830, "tags": "plb_pin_pve1;web",
             "template": 0, "hastate": "started", "uptime": 5000, "disk": 0,
             "maxdisk": 34359738368, "diskread": 0, "diskwrite": 0, "netin": 0, "netout": 0}
    typed = as_entry(entry)
    assert isinstance(typed, ResourceEntry)
    fast = _typical_guest(typed, GuestType.QEMU, 101, NODES)
    assert fast is not None and fast == _careful_guest(entry, GuestType.QEMU, 101, NODES)[0]
    assert fast.tags == frozenset({"plb_pin_pve1", "web"}) and fast.memhost == 2254857830
