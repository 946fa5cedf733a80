"""Issue 17, drain end to end: a real worker and beat on Redis, the simulator over HTTPS.
`pve-balancer drain pve3 --wait` empties pve3 of its running VMs, one migration at a time,
nothing lands on it meanwhile, and the stopped VM and the container stay, listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.runtime.scenarios import cluster, vm
from tests.support.pvesim_server import finished_migrations, wait_for_cycles

pytestmark = pytest.mark.integration

#: pve1 is CPU-hot (its own trigger wants to shed onto pve3, the emptiest node). pve3 holds
#: three running VMs, a stopped one and a container.
DRAIN = cluster([
    vm(100, "pve1", 8, 0.9, 8),
    vm(101, "pve1", 4, 0.9, 4),
    vm(102, "pve1", 4, 0.4, 4),
    vm(110, "pve2", 2, 0.2, 8),
    vm(300, "pve3", 2, 0.2, 8),
    vm(301, "pve3", 2, 0.2, 4),
    vm(302, "pve3", 2, 0.2, 2),
    vm(303, "pve3", 2, 0.2, 2, status="stopped"),
    {"vmid": 304, "name": "ct304", "node": "pve3", "type": "lxc", "cpus": 1, "cpu": 0.1,
     "memory_gib": 1, "mem_gib": 0.5},
])


def test_drain_empties_a_node_and_nothing_lands_on_it(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(DRAIN, speed=10.0)
    sim = running.sim
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()
    wait_for_cycles(sim, 3)  # the node list is published: the drain checks the name

    drained = deployment.cli("drain", "pve3", "--reason", "disk swap", "--wait", timeout=240)
    assert drained.returncode == 0, (drained.stdout, drained.stderr, deployment.logs())
    assert "draining pve3 by " in drained.stdout and "disk swap" in drained.stdout
    assert "pve3: empty, 0 running VMs left" in drained.stdout

    moves = finished_migrations(sim)
    off_pve3 = sorted(m.vmid for m in moves if m.source == "pve3")
    assert off_pve3 == [300, 301, 302], moves
    assert all(m.target != "pve3" for m in moves), "nothing lands on a drained node"
    assert {g: sim.guest(g).node for g in (303, 304)} == {303: "pve3", 304: "pve3"}
    assert sim.max_concurrent_migrations == 1, "one at a time, through the normal lock"

    store = StateStore.from_url(redis_url)
    reasons = {m.vmid: m.reason for m in store.history.migrations()}
    assert {vmid: reasons.get(vmid) for vmid in off_pve3} == dict.fromkeys(off_pve3, "drain")

    listing = json.loads(deployment.cli("drains", "--json").stdout)
    [pve3] = listing
    assert (pve3["node"], pve3["state"], pve3["running"]) == ("pve3", "empty", 0)
    assert {g["vmid"] for g in pve3["left"]} == {303, 304}
    status = deployment.cli("status").stdout
    assert "drained nodes:" in status and "pve3" in status

    # Still drained: later cycles (pve1 is hot) never pick pve3.
    wait_for_cycles(sim, 10)
    assert all(m.target != "pve3" for m in finished_migrations(sim))
    undrained = deployment.cli("undrain", "pve3").stdout.strip()
    assert undrained == "pve3 undrained: it may take VMs again"
    assert json.loads(deployment.cli("drains", "--json").stdout) == []
