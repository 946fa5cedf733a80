"""Issue 17, quiet hours end to end: a real worker and beat on Redis, the simulator over
HTTPS. Inside a window the CPU-hot node keeps its VMs (the move is shown, held back); a
drain still moves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from balancer.state import StateStore
from tests.runtime.scenarios import CPU_HOT
from tests.support.pvesim_server import finished_migrations, wait_for_cycles
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def window_around_now() -> dict[str, str]:
    """Open from an hour ago to an hour from now (past midnight if need be)."""
    now = datetime.now(UTC)
    return {"name": "test window", "start": f"{now - timedelta(hours=1):%H:%M}",
            "end": f"{now + timedelta(hours=1):%H:%M}", "timezone": "UTC"}


def test_a_window_holds_back_a_balancing_move_but_not_a_drain(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    deployment = deployment_factory(running, quiet_hours=[window_around_now()])
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    # Long enough for the CPU trigger's EMA to be ready several times over.
    wait_for_cycles(running.sim, 30, timeout=90)
    assert running.sim.migration_log == [], deployment.logs()
    last = store.history.last_decision()
    assert last is not None and last["action"] == "none"
    assert 'quiet hours "test window"' in last["explanation"][0]
    assert "only drains move; held back: vm 202" in last["explanation"][0]

    assert deployment.cli("drain", "pve3").returncode == 0
    wait_until(lambda: finished_migrations(running.sim), timeout=90, what="the drain move")
    wait_for_cycles(running.sim, 5)
    moves = finished_migrations(running.sim)
    assert [(m.vmid, m.source) for m in moves] == [(220, "pve3")], "only the drain moved"
