"""Issue 20.7: start in any order. Beat and `worker -B` started while Redis is down wait for it
(one log line, no traceback) and balance once it is up; a `worker -B` whose embedded beat died
exits non-zero so its supervisor restarts it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.cluster import assert_healthy, wait_for_cycles
from tests.runtime.scenarios import BALANCED
from tests.support.redis_server import RedisServer, wait_until

pytestmark = pytest.mark.integration


def test_beat_and_worker_started_before_redis_wait_for_it(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    running = pvesim_factory(BALANCED, speed=10.0)
    server = redis_server_factory()
    server.stop()  # not started yet, as far as the balancer can tell
    deployment = deployment_factory(running, redis=server.url)
    beat = deployment.start_beat()
    single = deployment.start_worker(wait=False, embedded_beat=True)
    wait_until(lambda: "waiting for Redis" in beat.log(), timeout=30,
               what="beat saying it waits for Redis")
    assert beat.alive() and single.alive()

    server.start()
    wait_for_cycles(running.sim, 5, timeout=60)
    assert beat.log().count("waiting for Redis") == 1, "one line per state change"
    assert "Traceback" not in beat.log(), beat.log()[-3000:]
    assert "Redis answers; schedule installed" in beat.log()
    assert_healthy(deployment)


def test_a_worker_whose_embedded_beat_died_exits_non_zero(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
) -> None:
    running = pvesim_factory(BALANCED, speed=10.0)
    deployment = deployment_factory(running)
    single = deployment.start_worker(embedded_beat=True)
    wait_for_cycles(running.sim, 2, timeout=60)
    children = wait_until(single.children, timeout=10, what="the embedded beat process")
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not single.alive(), timeout=30, what="the worker to stop")
    assert single.process.returncode == 70, single.log()[-3000:]
    assert "the embedded beat (worker -B) died" in single.log()


