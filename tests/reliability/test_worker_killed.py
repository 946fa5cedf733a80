"""A worker is killed with SIGKILL while a migration of ours runs (real Celery, simulator at 10x).

While PVE's task runs nothing else may start; a new worker takes the migration over once the
dead follower's heartbeat is silent, follows it to its end and records the outcome within a
bounded time. The dead worker's unacknowledged messages come back later (Redis' visibility
timeout; here at once, through kombu's own restore): they must change nothing.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from kombu import Connection

from balancer.state import StateStore
from tests.reliability.cluster import assert_healthy, ends, our_moves, wait_for_cycles
from tests.runtime.scenarios import CPU_HOT
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0
#: Every migration takes 80 simulated seconds (8 s real): long enough to kill its follower and
#: bring up another worker while PVE still migrates.
SLOW_MOVES = {**copy.deepcopy(CPU_HOT), "migration": {"seconds_per_gib": 1.0, "min_seconds": 80}}
#: heartbeat TTL (2 s) + a few cycles: the bound on noticing the end after PVE's task ended.
RECOVERY_BOUND = 10.0


def unacked(url: str) -> dict[str, str]:
    """Messages taken by a worker and not acknowledged (kombu's Redis QoS): delivery tag ->
    the Celery task id inside."""
    client = redis.Redis.from_url(url, decode_responses=True)
    return {tag: json.loads(raw)[0]["headers"]["id"]
            for tag, raw in client.hgetall("unacked").items()}


def redeliver(url: str, tags: list[str]) -> None:
    """Put these unacknowledged messages back on their queue, as kombu does once the
    visibility timeout passed."""
    with Connection(url) as conn:
        channel: Any = conn.default_channel
        with channel.conn_or_acquire() as client:
            for tag in tags:
                channel.qos.restore_by_tag(tag, client)


def test_sigkilled_follower_is_taken_over_and_its_messages_are_harmless(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    running = pvesim_factory(SLOW_MOVES, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running)
    doomed = deployment.start_worker(hostname="doomed")
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    def followed() -> bool:
        holder = store.lock.holder()
        return holder is not None and bool(holder.upid) and store.heartbeat.alive()

    wait_until(followed, timeout=60, what="our migration running and followed")
    holder = store.lock.holder()
    assert holder is not None
    doomed.kill()
    doomed.process.wait(10)
    orphaned = unacked(redis_url)
    assert orphaned, "the killed worker held unacknowledged messages"

    survivor = deployment.start_worker(hostname="survivor")
    (move,) = our_moves(running)
    wait_until(lambda: sim.task(move.upid).endtime is not None, timeout=60,
               what="PVE's migration task to end")
    assert sim.max_concurrent_migrations == 1 and len(our_moves(running)) == 1, (
        "nothing else started while PVE migrated")
    ended_at = time.monotonic()
    wait_until(lambda: store.lock.holder() is None and ends(store), timeout=RECOVERY_BOUND,
               what="the outcome recorded and the lock released")
    assert time.monotonic() - ended_at <= RECOVERY_BOUND
    assert "taking over" in survivor.log()

    # Minutes later in production: the dead worker's messages are redelivered.
    assert set(orphaned) <= set(unacked(redis_url)), "still waiting for redelivery"
    redeliver(redis_url, list(orphaned))
    for task_id in orphaned.values():
        wait_until(lambda task_id=task_id: f"[{task_id}] received" in survivor.log(),
                   timeout=10, what=f"redelivered task {task_id} received")
    wait_for_cycles(sim, 10)

    assert_healthy(deployment, killed=[doomed])
    (end,) = ends(store)
    assert (end.kind, end.vmid, end.upid, end.decision_id) == (
        "succeeded", holder.vmid, move.upid, holder.decision_id)
    assert [m.vmid for m in sim.migration_log] == [holder.vmid], "PVE was asked once"
    assert store.marks.blocked()[holder.vmid].startswith("cooldown")
    assert store.lock.holder() is None and not store.heartbeat.alive()
    assert "raised unexpected" not in survivor.log()
