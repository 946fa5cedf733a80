"""Redis (broker, result backend, beat's schedule and all state) restarts while a migration of
ours runs, with and without persistence. Real worker and beat, the simulator at 20x.

Both must ride it out (reconnect, no crash loop) and no migration may start twice or overlap.
With AOF persistence the lock survives and the migration is followed to its end as usual.
Without it the lock, the EMA, the cooldowns and the history are gone: evaluate must still see
PVE's running task and wait, record the outcome from PVE's task list afterwards, keep the moved
VM in cooldown, and let the CPU trigger wait for half an EMA window of fresh samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.reliability.cluster import (
    TWO_HOT,
    assert_healthy,
    ends,
    evaluate_reads,
    moved_vmids,
    our_moves,
)
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration

SPEED = 20.0
MIN_SAMPLES = 3  # FAST_BALANCING: 3 s window / 0.5 s interval = 6 samples, half of them


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
def test_redis_restart_mid_migration(
    redis_server_factory: Callable[..., Any], pvesim_factory: Callable[..., Any],
    deployment_factory: Callable[..., Any], appendonly: bool,
) -> None:
    server = redis_server_factory(appendonly=appendonly)
    running = pvesim_factory(TWO_HOT, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running, redis=server.url)
    deployment.start_worker()
    deployment.start_beat()
    deployment.start_beat()  # a standby: after the restart exactly one of them leads again
    store = StateStore.from_url(server.url)

    def migrating() -> bool:
        holder = store.lock.holder()
        return holder is not None and bool(holder.upid) and sim.running_migrations() == 1

    wait_until(migrating, timeout=60, what="our first migration running")
    first = our_moves(running)[0]
    server.restart()
    reads_at_restart = evaluate_reads(sim)

    # Both hot nodes get relieved, one migration each, never overlapping.
    wait_until(lambda: len([m for m in our_moves(running) if m.ended]) >= 2, timeout=90,
               what="the second migration finished")
    wait_until(lambda: store.lock.holder() is None and len(ends(store)) >= 2, timeout=30,
               what="both outcomes recorded")
    wait_until(lambda: evaluate_reads(sim) >= reads_at_restart + 10, timeout=30,
               what="evaluate keeps running after the restart")

    assert_healthy(deployment)
    assert sim.max_concurrent_migrations == 1, deployment.logs()
    assert len(moved_vmids(running)) == len(set(moved_vmids(running))) == 2, (
        moved_vmids(running))
    assert all(m.exitstatus == "OK" for m in our_moves(running))
    recorded = {e.upid: e for e in ends(store)}
    assert first.upid in recorded, f"the outcome of {first.upid} is recorded: {ends(store)}"
    assert recorded[first.upid].kind == "succeeded"
    assert store.marks.blocked().get(first.vmid, "").startswith("cooldown"), (
        "the VM just moved stays put")
    assert store.keys_without_ttl() == []

    if not appendonly:
        assert recorded[first.upid].recovered, "read back from PVE's task list"
        # The EMA restarted from nothing: the CPU trigger waited for half a window.
        second = our_moves(running)[1]
        decisions = list(reversed(store.history.decisions()))
        warming = [d for d in decisions if "warming up" in " ".join(d["explanation"])]
        assert warming, "decisions after the restart waited for EMA samples"
        move = next(d for d in decisions
                    if d["action"] == "migrate" and d["vmid"] == second.vmid)
        samples = re.search(r"\((\d+) samples\)", " ".join(move["explanation"]))
        assert samples is not None and int(samples.group(1)) >= MIN_SAMPLES, move
        assert warming[0]["at"] < move["at"]
