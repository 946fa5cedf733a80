"""Issue 20.3: time compared across hosts must not depend on their clocks agreeing.

Workers, beat and the CLI run with wall clocks shifted by a `sitecustomize`
(tests/support/skewed_clock), like hosts with broken NTP; Redis's clock is the one they share.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.reliability.cluster import assert_healthy, ends, wait_for_cycles
from tests.runtime.scenarios import CPU_HOT
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration


def test_a_beat_30_seconds_behind_still_gets_its_cycles_run(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
) -> None:
    """Celery's `expires` is a time by beat's clock compared with the worker's: with it, every
    evaluate was discarded as expired before it ran and balancing stopped without a word."""
    running = pvesim_factory(CPU_HOT, speed=10.0)
    deployment = deployment_factory(running)
    worker = deployment.start_worker()
    deployment.start_beat(clock_offset=-30.0)
    wait_for_cycles(running.sim, 5, timeout=30)
    assert "Discarding revoked task" not in worker.log()
    assert_healthy(deployment)


def test_a_cooldown_holds_on_a_host_an_hour_ahead(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    """A cooldown set by one host must still hold when a host whose clock is an hour ahead
    reads it (a worker 1 h ahead moved a VM back within its 600-s cooldown)."""
    running = pvesim_factory(CPU_HOT, speed=10.0)
    store = StateStore.from_url(redis_url)
    deployment = deployment_factory(running, migration_cooldown_seconds=600)
    deployment.start_worker()
    deployment.start_beat()
    wait_until(lambda: [e.kind for e in ends(store)] == ["succeeded"], timeout=60,
               what="the first migration to end")
    moved = ends(store)[0].vmid

    ahead = deployment.cli("status", "--json", clock_offset=3600.0)
    assert ahead.returncode == 0, ahead.stderr
    marks = json.loads(ahead.stdout)["marks"]
    assert [(m["kind"], m["vmid"]) for m in marks] == [("cooldown", moved)], marks
    later = deployment.start_worker(clock_offset=3600.0)
    wait_for_cycles(running.sim, 10, timeout=30)
    assert [e.vmid for e in ends(store)] == [moved], "nothing moved again"
    assert store.marks.blocked()[moved].startswith("cooldown")
    assert later.alive()
