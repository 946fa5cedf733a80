"""Issue 17, pause end to end: two real workers and beat on one Redis, the simulator over
HTTPS. A pause set with the CLI holds every worker back; resume lets the move happen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.runtime.scenarios import CPU_HOT
from tests.support.pvesim_server import finished_migrations, wait_for_cycles
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_pause_holds_across_workers_until_resumed(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    deployment = deployment_factory(running)
    paused = deployment.cli("pause", "--reason", "maintenance")
    assert paused.returncode == 0, paused.stderr
    deployment.start_worker(hostname="w1")
    deployment.start_worker(hostname="w2")
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    # Long enough for the CPU trigger's EMA to be ready several times over.
    wait_for_cycles(running.sim, 30, timeout=90)
    assert running.sim.migration_log == [], deployment.logs()
    last = store.history.last_decision()
    skips = store.metrics.snapshot().counter("skipped_cycles", {"reason": "paused"})
    assert skips >= 10, "every cycle says it was paused"
    assert last is None or last["action"] != "migrate"
    status = deployment.cli("status")
    assert "PAUSED: paused by " in status.stdout and "maintenance" in status.stdout

    assert deployment.cli("resume").stdout.strip() == "resumed"
    wait_until(lambda: finished_migrations(running.sim), timeout=90,
               what="the move held back by the pause")
    assert [m.vmid for m in finished_migrations(running.sim)] == [202]
