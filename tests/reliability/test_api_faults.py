"""The PVE API fails some calls (real worker and beat, the simulator's fault injection).

First every `/cluster/status` hangs past the client's timeout, then 20% of all reads answer 503,
then the faults stop. Cycles are skipped (or their reads retried), nothing is decided from a
partial read, no task fails, the service keeps running, and once the faults stop the hot node
is relieved by exactly the migration a healthy cluster would get.
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
CLEAN_DECISION = (202, "pve1", "pve3")  # what CPU_HOT gets without faults


def skips(store: StateStore, reason: str) -> float:
    return store.metrics.snapshot().counter("skipped_cycles", {"reason": reason})


def test_api_faults_skip_cycles_and_balancing_resumes(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    running = pvesim_factory(CPU_HOT, speed=SPEED)
    sim = running.sim
    store = StateStore.from_url(redis_url)
    # PVE hangs on a read every cycle needs: longer than the client's 5 s timeout and the
    # cycle's deadline, which ends the read first (the task's time limit is the backstop).
    sim.set_faults(latency_seconds=6.0, paths=[r"^/cluster/status$"])
    deployment = deployment_factory(running)
    worker = deployment.start_worker()
    deployment.start_beat()
    wait_until(lambda: skips(store, "read_failed") + skips(store, "time_limit") >= 2,
               timeout=30, what="cycles ended by their deadline")
    assert store.history.events() == [] and sim.migration_log == []

    # 20% of all reads fail with 503: retried, or the cycle is skipped.
    sim.set_faults(error_rate=0.2, error_status=503, methods=["GET"])
    wait_for_cycles(sim, 12)
    served_503 = sum(1 for r in sim.request_log if r.status == 503)

    sim.clear_faults()
    wait_until(lambda: ends(store), timeout=60, what="a migration finished and recorded")
    wait_for_cycles(sim, 6)

    assert served_503 >= 5, "the faults were hit"
    assert_healthy(deployment)
    assert "raised unexpected" not in worker.log(), "a cycle failed instead of skipping"
    migrate_decisions = [(d["vmid"], d["source"], d["target"])
                         for d in store.history.decisions() if d["action"] == "migrate"]
    assert migrate_decisions and set(migrate_decisions) == {CLEAN_DECISION}, migrate_decisions
    assert [(m.vmid, m.source, m.target, m.exitstatus) for m in our_moves(running)] == [
        (*CLEAN_DECISION, "OK")]
    assert [e.kind for e in ends(store)] == ["succeeded"]
    assert store.lock.holder() is None
