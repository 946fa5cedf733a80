"""Soak: over 30 minutes of simulated cluster time (90x, about 20 s real) with loads swinging
between nodes and 5% of API reads failing, real worker and beat.

Afterwards: at most one migration at a time, no VM moved again within its cooldown, the lock
free (no leak), every key of ours with a TTL and their number bounded, Redis' memory small,
and every migration PVE ran matched by recorded events (and those by a decision).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import redis

from balancer.state import StateStore
from tests.reliability.cluster import assert_healthy, ends, our_moves
from tests.runtime.scenarios import cluster, vm
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration

SPEED = 90.0
SIMULATED = 1800.0  # seconds of cluster time
COOLDOWN = 4.0  # real seconds (6 simulated minutes)
#: Our keys: locks, heartbeat, EMA, marks, two histories, a few caches, metrics. Not per cycle.
MAX_KEYS = 40
MAX_MEMORY = 32 * 2**20


def _swing(vmid: int, node: str, phase: float) -> dict[str, Any]:
    """A 4-vCPU VM whose load swings 10%..100% every 10 simulated minutes."""
    return vm(vmid, node, 4, 0.5, 4, profile={
        "shape": "periodic", "period": 600, "cpu_min": 0.1, "cpu_max": 1.0, "phase": phase})


#: pve1's and pve2's VMs peak half a period apart, so the hot spot moves back and forth;
#: pve3 and pve4 stay calm with room for what is moved there.
SWINGING = cluster([
    *(_swing(500 + i, "pve1", 0.0) for i in range(5)),
    *(_swing(510 + i, "pve2", 0.5) for i in range(5)),
    vm(505, "pve1", 2, 0.5, 8),
    vm(515, "pve2", 2, 0.5, 8),
    vm(520, "pve3", 4, 0.3, 8),
    vm(530, "pve4", 4, 0.3, 8),
], nodes=[{"name": f"pve{i}", "threads": 16, "memory_gib": 64} for i in range(1, 5)],
    migration={"seconds_per_gib": 2.0, "min_seconds": 3.0})


def test_soak_half_an_hour_of_swinging_load(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    running = pvesim_factory(SWINGING, speed=SPEED)
    sim = running.sim
    sim.set_faults(error_rate=0.05, error_status=503, methods=["GET"])
    deployment = deployment_factory(running, migration_cooldown_seconds=COOLDOWN)
    worker = deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    wait_until(lambda: sim.now() - sim.start_time >= SIMULATED, timeout=SIMULATED / SPEED + 30,
               interval=0.5, what=f"{SIMULATED:g} simulated seconds")
    sim.clear_faults()
    wait_until(lambda: store.lock.holder() is None and sim.running_migrations() == 0,
               timeout=15, what="the lock free with nothing migrating")

    assert_healthy(deployment)
    assert "raised unexpected" not in worker.log()
    moves = [m for m in our_moves(running) if m.ended is not None]
    assert len(moves) >= 2, f"the load swings should have caused migrations: {moves}"
    assert sim.max_concurrent_migrations == 1
    for vmid, group in itertools.groupby(sorted(moves, key=lambda m: (m.vmid, m.started)),
                                         key=lambda m: m.vmid):
        runs = list(group)
        for before, after in itertools.pairwise(runs):
            assert after.started - before.ended >= COOLDOWN * SPEED * 0.9, (
                f"vm {vmid} moved again within its cooldown: {runs}")

    # Every migration PVE ran is in our history, started and ended; every start was decided.
    events = store.history.events()
    started = {e.upid: e for e in events if e.kind == "started"}
    ended = {e.upid: e for e in ends(store)}
    decided = {d["decision_id"] for d in store.history.decisions() if d["action"] == "migrate"}
    for move in moves:
        assert move.upid in started and move.upid in ended, (move, events[:6])
        assert started[move.upid].decision_id in decided
        assert ended[move.upid].kind == ("succeeded" if move.exitstatus == "OK" else "failed")
    assert set(started) <= {m.upid for m in our_moves(running)}, "no phantom migrations"

    # Bounded state: our keys all expire and stay few; Celery's results expire too.
    assert store.keys_without_ttl() == []
    assert store.key_count() <= MAX_KEYS
    client = redis.Redis.from_url(redis_url)
    results = list(client.scan_iter(match="celery-task-meta-*", count=1000))
    assert results and all(client.ttl(key) > 0 for key in results)
    assert int(client.info("memory")["used_memory"]) < MAX_MEMORY
    assert not store.heartbeat.alive()
