"""The client parses PVE's answers with orjson (issue 16) and reads exactly what proxmoxer's
own parser reads, including what orjson refuses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from proxmoxer.backends.https import JsonSerializer

from balancer.model import GuestType
from balancer.pve.client import FastJsonSerializer
from balancer.pve.snapshot import _guest

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"


@dataclass
class Answer:
    """What the serializers read of a `requests.Response`."""

    content: bytes


def _both(body: bytes) -> tuple[Any, Any]:
    return FastJsonSerializer().loads(Answer(body)), JsonSerializer().loads(Answer(body))


@pytest.mark.parametrize("fixture", ["cluster", "ha", "tasks"])
def test_the_conformance_fixtures_read_the_same(fixture: str) -> None:
    """The shapes derived from PVE's source (tests/conformance/fixtures, `_origin` in each)."""
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


def test_an_integer_beyond_64_bits_is_refused_by_the_snapshot_either_way() -> None:
    """orjson reads it as a float, json as an int; PVE sends none, and the snapshot leaves
    the guest out whichever it gets (no memory is that large)."""
    entry = (b'{"data": [{"vmid": 100, "type": "qemu", "node": "pve1", "status": "running",'
             b' "cpu": 0.1, "maxcpu": 2, "mem": 123456789012345678901234567890,'
             b' "maxmem": 4294967296}]}')
    fast, slow = _both(entry)
    for parsed in (fast, slow):
        guest, problem = _guest(parsed[0], GuestType.QEMU, 100, {"pve1": True})
        assert guest is None and problem.startswith("mem is ")
