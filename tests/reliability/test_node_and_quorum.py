"""Nodes go offline and the cluster loses quorum (real worker and beat, simulator at 10x).

Without quorum the balancer does nothing at all (not even a migrate request); with the hot node
offline nothing moves from it; with the preferred target offline the move goes elsewhere.
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


def test_no_action_without_quorum_and_never_to_or_from_an_offline_node(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str,
) -> None:
    running = pvesim_factory(CPU_HOT, speed=SPEED)
    sim = running.sim
    store = StateStore.from_url(redis_url)
    sim.set_quorate(False)
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()

    wait_until(lambda: store.metrics.snapshot().counter(
        "skipped_cycles", {"reason": "no_quorum"}) >= 8, timeout=30,
        what="cycles skipped for lack of quorum")
    assert not [r for r in sim.request_log if r.method == "POST"], "no action at all"
    assert store.history.events() == []

    # Quorum back, but the hot node itself is offline: nothing may leave it.
    sim.set_node_online("pve1", False)
    sim.set_quorate(True)
    wait_for_cycles(sim, 8)
    assert sim.migration_log == [] and store.history.events() == []

    # pve1 back, the least-loaded node pve3 (the usual target) offline: relief goes to pve2.
    sim.set_node_online("pve3", False)
    sim.set_node_online("pve1", True)
    wait_until(lambda: ends(store), timeout=60, what="a migration finished")
    wait_until(lambda: store.lock.holder() is None, timeout=30, what="lock released")
    wait_for_cycles(sim, 6)

    assert_healthy(deployment)
    assert [(m.vmid, m.source, m.target, m.exitstatus) for m in our_moves(running)] == [
        (202, "pve1", "pve2", "OK")]
    offline_targets = [d for d in store.history.decisions()
                       if d["action"] == "migrate" and d["target"] == "pve3"]
    assert offline_targets == [], "never decided to move to the offline node"
