"""The client's fast decoders (issue 16) read exactly what proxmoxer's own parser reads.

orjson parses the small answers; msgspec decodes `/cluster/resources` into typed entries
(balancer/pve/wire.py). Every snapshot is compared with the careful, field-by-field reading
of the same bytes, over the shapes derived from PVE's source (tests/conformance/fixtures,
`_origin` in each) and over entries PVE's JSON writer can send in another type than its
schema says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from proxmoxer.backends.https import JsonSerializer

from balancer.pve import snapshot as snapshot_module
from balancer.pve.client import FastJsonSerializer, QuietBody, ResourcesSerializer
from balancer.pve.errors import SnapshotUnusable
from balancer.pve.snapshot import build_snapshot
from balancer.pve.wire import ResourceEntry, decode_resources

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"
CLUSTER = json.loads((FIXTURES / "cluster.json").read_text())


@dataclass
class Answer:
    """What the serializers read of a `requests.Response`."""

    content: bytes


def _both(body: bytes) -> tuple[Any, Any]:
    return FastJsonSerializer().loads(Answer(body)), JsonSerializer().loads(Answer(body))


@pytest.mark.parametrize("fixture", ["cluster", "ha", "tasks"])
def test_the_conformance_fixtures_read_the_same(fixture: str) -> None:
    payload = json.loads((FIXTURES / f"{fixture}.json").read_text())
    body = json.dumps({"data": payload}).encode()
    fast, slow = _both(body)
    assert fast == slow == payload


@pytest.mark.parametrize("body", [
    b'{"data": "caf\\u00e9"}', b"not json", b'{"data": [1, 2', b"\xff\xfe",
], ids=["unicode", "not-json", "truncated", "not-utf8"])
def test_what_orjson_refuses_reads_as_proxmoxer_reads_it(body: bytes) -> None:
    fast, slow = _both(body)
    assert fast == slow


def _snapshots(resources: list[dict[str, Any]], status: Any) -> tuple[Any, Any]:
    """The snapshot built from the typed decode of `resources`, and the one the careful path
    alone builds from the generic decode (every entry checked field by field: the reference
    the fast path must agree with)."""
    body = json.dumps({"data": resources}).encode()
    typed = build_snapshot(ResourcesSerializer().loads(Answer(body)), status, taken_at=1.0)
    original = snapshot_module._typical_guest
    snapshot_module._typical_guest = lambda *args: None  # type: ignore[assignment]
    try:
        careful = build_snapshot(JsonSerializer().loads(Answer(body)), status, taken_at=1.0)
    finally:
        snapshot_module._typical_guest = original
    return typed, careful


def _cases() -> dict[str, list[dict[str, Any]]]:
    """R1 (every resource type PVE sends) and its variants, as test_cluster_reads builds
    them."""
    r1 = CLUSTER["cases"]["R1"]["payload"]
    offline = CLUSTER["cases"]["R1b_node_offline_under_5_minutes"]
    no_audit = CLUSTER["cases"]["R1c_no_sys_audit_on_node"]
    return {
        "R1": r1,
        "R1b": [offline["node"] if e["id"] == "node/pve3" else
                offline["guest"] if e["id"] == "qemu/103" else e for e in r1],
        "R1c": [no_audit["node"] if e["id"] == "node/pve1" else e for e in r1],
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_the_typed_decode_builds_the_snapshot_the_careful_path_builds(case: str) -> None:
    resources = _cases()[case]
    status = CLUSTER["status"]["S1"]["payload"]
    assert decode_resources(json.dumps({"data": resources}).encode()) is not None, (
        "PVE's own shapes must take the fast path")
    try:
        typed, careful = _snapshots(resources, status)
    except SnapshotUnusable as exc:  # a case built to be refused is refused the same way
        with pytest.raises(SnapshotUnusable) as generic_error:
            build_snapshot(resources, status)
        assert str(generic_error.value) == str(exc)
        return
    assert typed == careful
    assert typed.guests, "the case has guests"


GUEST = {"id": "qemu/100", "vmid": 100, "type": "qemu", "node": "pve1", "status": "running",
         "name": "web", "cpu": 0.25, "maxcpu": 2, "mem": 1 << 30, "maxmem": 4 << 30,
         "memhost": 1 << 30, "template": 0, "tags": "a;B", "uptime": 10}
NODE = {"id": "node/pve1", "node": "pve1", "type": "node", "status": "online", "cpu": 0.1,
        "maxcpu": 8, "mem": 1 << 33, "maxmem": 1 << 34}
STATUS = [{"type": "cluster", "name": "c", "quorate": 1, "nodes": 1},
          {"type": "node", "name": "pve1", "online": 1, "nodeid": 1, "local": 1}]


@pytest.mark.parametrize("odd", [
    {"mem": "1073741824"}, {"cpu": "0.25"}, {"template": True}, {"hastate": None},
    {"hastate": "no-such-state"}, {"memhost": None}, {"tags": None}, {"cpu": None},
    {"mem": 1.5}, {"maxmem": 0}, {"cpu": 99.0}, {"vmid": "100"}, {"lock": 1},
    {"node": "pve9"}, {"name": 7},
], ids=repr)
def test_an_entry_off_the_schema_reads_as_the_careful_path_reads_it(odd: dict[str, Any]
                                                                    ) -> None:
    """Perl's JSON writer can send a number as a string, a null for an undef: one such
    entry sends the answer the generic way, and the snapshot is the one it always built
    (the guest read, or left out with the same reason)."""
    other = {**GUEST, "id": "qemu/101", "vmid": 101}
    typed, careful = _snapshots([NODE, {**GUEST, **odd}, other], STATUS)
    assert typed == careful
    assert 101 in {g.vmid for g in typed.guests}


def test_an_integer_beyond_64_bits_is_refused_by_the_snapshot_either_way() -> None:
    """msgspec and json read it as an int, orjson as a float; PVE sends none, and the
    snapshot leaves the guest out whichever it gets (no memory is that large)."""
    huge = {**GUEST, "mem": 123456789012345678901234567890}
    typed, careful = _snapshots([NODE, huge], STATUS)
    assert typed.guests == careful.guests == ()
    for snap in (typed, careful):
        assert [u.vmid for u in snap.unreadable_guests] == [100]
        assert any(w.startswith("guest 100: mem is ") for w in snap.warnings)


def test_typed_entries_answer_like_the_mapping_they_came_from() -> None:
    [entry] = decode_resources(json.dumps({"data": [GUEST]}).encode()) or []
    assert isinstance(entry, ResourceEntry)
    assert entry.get("lock") is None and entry.get("lock", "x") == "x"
    assert entry.get("maxcpu") == 2.0
    kept = {k: v for k, v in GUEST.items() if k != "uptime"}  # a field we never read
    assert entry.to_dict() == {**kept, "maxcpu": 2.0}


def test_a_response_body_prints_as_its_size() -> None:
    """proxmoxer formats every body into a DEBUG message: it must be the size, not 3 MiB of
    cluster inventory (and not the cost of printing it)."""
    body = QuietBody(b'{"data": []}')
    assert f"{body!r}" == "<12 bytes>"
    assert body == b'{"data": []}' and json.loads(body) == {"data": []}
