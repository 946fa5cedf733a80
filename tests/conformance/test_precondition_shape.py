"""PVE's migrate precondition, read as PVE writes it (issue 13): every other node is keyed in
`not_allowed_nodes`, `{}` when nothing blocks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from balancer.pve.parse import parse_precondition

FIXTURE = json.loads((Path(__file__).parent / "fixtures" /
                      "qemu-migrate-precondition.json").read_text())


def _payload(case: str) -> dict[str, Any]:
    return FIXTURE["cases"][case]["payload"]


def test_a_clean_vm_may_go_to_every_other_node() -> None:
    for target in ("pve2", "pve3"):
        pre = parse_precondition(_payload("clean"), "pve1", 100, target)
        assert pre.allowed, pre.reason


def test_only_the_node_with_a_reason_is_refused() -> None:
    payload = _payload("storage_missing_on_pve3")
    assert parse_precondition(payload, "pve1", 102, "pve2").allowed
    refused = parse_precondition(payload, "pve1", 102, "pve3")
    assert not refused.allowed
    assert refused.reason is not None and "nfs-a" in refused.reason
