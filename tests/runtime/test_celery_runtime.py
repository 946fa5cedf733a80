"""End to end: real Redis, real Celery worker(s) and beat, the simulator, real proxmoxer.

Simulated time runs 10x real time; the balancer runs with 0.5 s cycles and a 3 s EMA window,
so a minute of cluster behaviour takes seconds. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.runtime.scenarios import BALANCED, CPU_HOT, HOT_AND_FULL
from tests.support.pvesim_server import finished_migrations, wait_for_cycles
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0


def test_cpu_hot_node_is_relieved_by_the_one_expected_migration(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(CPU_HOT, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()

    wait_until(lambda: finished_migrations(sim), timeout=90, what="a finished migration")
    store = StateStore.from_url(redis_url)
    wait_until(lambda: store.lock.holder() is None, timeout=30, what="lock released")
    wait_for_cycles(sim, 12)

    moves = finished_migrations(sim)
    assert [(m.vmid, m.source, m.target, m.exitstatus) for m in moves] == [
        (202, "pve1", "pve3", "OK")], deployment.logs()
    assert sim.guest(200).node == "pve1", "the busiest VM must stay"
    assert sim.node("pve1").cpu <= 0.8
    history = store.history.events()
    assert [e.kind for e in reversed(history)] == ["requested", "started", "succeeded"]
    assert store.marks.blocked().get(202, "").startswith("cooldown")


def test_balanced_cluster_sees_no_migration(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(BALANCED, speed=SPEED)
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()
    # 40 cycles at 0.5 s: 20 s real, over three simulated minutes.
    wait_for_cycles(running.sim, 40, timeout=120)
    assert running.sim.migration_log == []
    last = StateStore.from_url(redis_url).history.last_decision()
    assert last is not None and last["action"] == "none"


def test_two_workers_and_two_beats_never_overlap_migrations(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(HOT_AND_FULL, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running)
    deployment.start_worker(concurrency=3, hostname="a")
    deployment.start_worker(concurrency=3, hostname="b")
    deployment.start_beat()
    deployment.start_beat()

    wait_until(lambda: len(finished_migrations(sim)) >= 2, timeout=120,
               what="two finished migrations")
    store = StateStore.from_url(redis_url)
    wait_until(lambda: store.lock.holder() is None, timeout=30, what="lock released")
    wait_for_cycles(sim, 10)

    assert sim.max_concurrent_migrations == 1, deployment.logs()
    vmids = [m.vmid for m in sim.migration_log]
    assert len(vmids) == len(set(vmids)), f"a VM was migrated twice: {vmids}"
    assert all(m.exitstatus == "OK" for m in finished_migrations(sim))


def test_manual_evaluate_returns_the_decision(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any]
) -> None:
    running = pvesim_factory(BALANCED, speed=SPEED)
    deployment = deployment_factory(running)
    deployment.start_worker()
    task_id = deployment.call("call", "balancer.evaluate").strip()
    output = deployment.call("result", task_id)
    result = ast.literal_eval(output.strip())
    assert result["action"] == "none"
    assert set(result) >= {"action", "vmid", "source", "target", "reason", "explanation"}
    assert result["explanation"], "a decision always says why"
    assert running.token_value not in output


def test_human_started_migration_makes_evaluate_wait(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any]
) -> None:
    scenario = {**CPU_HOT, "migration": {"seconds_per_gib": 60.0, "min_seconds": 600.0}}
    running = pvesim_factory(scenario, speed=1.0)
    running.sim.start_migration(210, "pve3", user="root@pam")
    deployment = deployment_factory(running)
    deployment.start_worker()
    task_id = deployment.call("call", "balancer.evaluate").strip()
    output = deployment.call("result", task_id)
    assert "'action': 'skipped'" in output
    assert "PVE shows a migration in flight: vm 210" in output
    assert [m.vmid for m in running.sim.migration_log] == [210]
