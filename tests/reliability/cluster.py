"""Shared pieces of the end-to-end reliability tests: scenarios and what to look at afterwards.

The simulator observers (cycles, finished migrations) come from tests/support/pvesim_server.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from balancer.migrations import MigrationEvent
from balancer.state import StateStore
from tests.runtime.scenarios import cluster, vm
from tests.support.celery_worker import BalancerDeployment, CeleryProcess
from tests.support.pvesim_server import (
    RunningSim,
    evaluate_reads,
    finished_migrations,
    wait_for_cycles,
)

__all__ = ["TWO_HOT", "assert_healthy", "ends", "evaluate_reads", "finished_migrations",
           "moved_vmids", "our_moves", "wait_for_cycles"]

#: pve2 (~90%) and pve1 (~88%) both CPU-hot, pve3 nearly idle: two migrations, hottest first,
#: each to pve3. Migrations copy 10 s of simulated time per GiB, so a restart or a kill can
#: land while one runs.
TWO_HOT = cluster([
    vm(200, "pve1", 8, 0.9, 16),
    vm(201, "pve1", 4, 0.8, 8),
    vm(202, "pve1", 4, 0.6, 4),
    vm(203, "pve1", 2, 0.5, 2),
    vm(210, "pve2", 8, 0.85, 16),
    vm(211, "pve2", 4, 0.75, 8),
    vm(212, "pve2", 4, 0.6, 4),
    vm(213, "pve2", 4, 0.5, 4),
    vm(220, "pve3", 2, 0.3, 4),
], migration={"seconds_per_gib": 10.0, "min_seconds": 5.0})


def our_moves(running: RunningSim) -> list[Any]:
    """qmigrate tasks the balancer's token started, oldest first."""
    token_id = f"{running.user}!{running.token_name}"
    return [m for m in running.sim.migration_log if m.type == "qmigrate" and m.user == token_id]


def moved_vmids(running: RunningSim) -> list[int]:
    return [m.vmid for m in our_moves(running)]


def ends(store: StateStore) -> list[MigrationEvent]:
    """Recorded migration ends, oldest first."""
    return [e for e in reversed(store.history.events()) if e.kind.ends]


def assert_healthy(deployment: BalancerDeployment, killed: Sequence[CeleryProcess] = ()) -> None:
    """Every process (but the ones the test killed) still runs and none logged a crash."""
    for proc in deployment.processes:
        if proc in killed:
            continue
        assert proc.alive(), f"{proc.name} exited:\n{proc.log()[-4000:]}"
        # How a dying worker or beat signs off (a CRITICAL "Couldn't ack" while Redis is away
        # is not one: the message comes back after the visibility timeout).
        for crash in ("Unrecoverable error", "beat raised exception"):
            assert crash not in proc.log(), proc.log()[-8000:]
