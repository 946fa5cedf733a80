"""`choose_move` against pvesim over HTTPS: every move it returns was allowed by PVE's
precondition, one question per VM covers every target, and refusals never turn into an
unverified move (issue 13, item 5)."""

from __future__ import annotations

from typing import Any

from balancer.config import BalancingConfig, ProxmoxConfig, Secret
from balancer.engine import CpuReading, EngineInput
from balancer.pve.client import PveClient
from balancer.pve.snapshot import read_snapshot
from balancer.runtime.choose import MAX_PRECONDITION_TRIES, Refusal, choose_move
from tests.support.pvesim_server import PvesimFactory, RunningSim


def _scenario(disk_storage: str) -> dict[str, Any]:
    """pve1 above memory_max with four 14-GiB VMs; pve3 is the emptiest node, but storage
    `nfs-a` is only on pve1 and pve2 (storage.cfg `nodes`)."""
    return {
        "cluster": {"name": "choose"},
        "nodes": [{"name": n, "threads": 32, "memory_gib": 64} for n in ("pve1", "pve2", "pve3")],
        "storages": [
            {"name": "local-lvm", "type": "lvmthin", "shared": False, "size_gib": 500},
            {"name": "nfs-a", "type": "nfs", "shared": True, "size_tib": 4,
             "nodes": ["pve1", "pve2"]},
        ],
        "guests": [
            *({"vmid": 100 + i, "node": "pve1", "cpus": 2, "memory_gib": 14, "mem_gib": 13,
               "cpu": 0.1, "disks": [{"storage": disk_storage, "size_gib": 8}]}
              for i in range(4)),
            {"vmid": 200, "node": "pve2", "cpus": 2, "memory_gib": 16, "mem_gib": 15,
             "cpu": 0.1},
        ],
    }


def _client(running: RunningSim) -> PveClient:
    return PveClient(ProxmoxConfig(
        hosts=(running.host_port,), user=running.user, token_name=running.token_name,
        token_value=Secret(running.token_value), verify_ssl=False), sleep=lambda s: None)


def _choose(running: RunningSim, refusals: list[Refusal]) -> Any:
    client = _client(running)
    snapshot = read_snapshot(client).snapshot
    cpu = {n.name: CpuReading(n.cpu, 100) for n in snapshot.nodes}
    return choose_move(client, EngineInput(snapshot, cpu, {}, BalancingConfig()),
                       refusals.append)


def _precondition_gets(running: RunningSim) -> list[str]:
    return [r.path for r in running.sim.request_log
            if r.method == "GET" and r.path.endswith("/migrate")]


def test_a_refused_target_is_replaced_by_an_allowed_one(pvesim_factory: PvesimFactory) -> None:
    running = pvesim_factory(_scenario("nfs-a"))
    refusals: list[Refusal] = []
    decision = _choose(running, refusals)
    assert decision.move is not None
    assert (decision.move.source, decision.move.target) == ("pve1", "pve2")
    [refusal] = refusals
    assert refusal.vmid == decision.move.vmid and not refusal.whole_vm
    assert "pve3" in refusal.reason and "nfs-a" in refusal.reason
    # One question about the VM answered for both targets.
    assert len(_precondition_gets(running)) == 1


def test_after_the_last_allowed_try_nothing_unverified_moves(
        pvesim_factory: PvesimFactory) -> None:
    running = pvesim_factory(_scenario("local-lvm"))
    refusals: list[Refusal] = []
    decision = _choose(running, refusals)
    assert decision.move is None and decision.action == "none"
    assert decision.explanation[0].startswith(
        f"no migration: no verified move after {MAX_PRECONDITION_TRIES} refusals")
    assert len(refusals) == MAX_PRECONDITION_TRIES
    assert all(r.whole_vm and "local disks" in r.reason for r in refusals)
    assert len({r.vmid for r in refusals}) == MAX_PRECONDITION_TRIES
    assert len(_precondition_gets(running)) == MAX_PRECONDITION_TRIES
