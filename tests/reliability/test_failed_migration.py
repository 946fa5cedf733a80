"""A migration fails in PVE (its task ends with an error), real worker and beat at 10x.

The lock is released, the VM backs off, and the next cycle relieves the node with another
candidate instead of retrying the same VM every cycle. (That the backoff grows with each
failure is shown step by step in test_migration_steps.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.reliability.cluster import assert_healthy, ends, our_moves, wait_for_cycles
from tests.runtime.scenarios import CPU_HOT
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0


def test_failed_migration_backs_off_and_moves_another_candidate(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    running = pvesim_factory(CPU_HOT, speed=SPEED)
    sim = running.sim
    sim.fail_next_migration(202, "migration aborted")  # the engine's first choice
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    wait_until(lambda: len(ends(store)) >= 2, timeout=60, what="two migration outcomes")
    wait_until(lambda: store.lock.holder() is None, timeout=30, what="lock released")
    wait_for_cycles(sim, 10)

    assert_healthy(deployment)
    moves = [(m.vmid, m.exitstatus) for m in our_moves(running)]
    assert moves[0] == (202, "migration aborted")
    assert moves[1][0] != 202 and moves[1][1] == "OK", moves
    assert len(moves) == 2, f"202 is not retried while it backs off: {moves}"
    assert [(e.kind, e.vmid) for e in ends(store)] == [
        ("failed", 202), ("succeeded", moves[1][0])]
    failed = ends(store)[0]
    assert failed.outcome == "migration aborted" and (failed.backoff or 0) > 0
    assert store.marks.failures(202) == 1, "remembered, so the next failure backs off longer"
    assert sim.max_concurrent_migrations == 1
    assert sim.node("pve1").cpu <= 0.8, "the node was relieved all the same"
