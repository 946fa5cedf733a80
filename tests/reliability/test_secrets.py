"""Secrets never leak: a deployment against a password-protected Redis, with a distinctive API
token, goes through a failed and a successful migration, failing API calls and a Redis restart.
Neither the token value nor the Redis password may appear in any worker or beat log, anything
stored in Redis (task results, broker messages, state), CLI output or error messages.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import redis

from balancer.state import StateStore
from tests.reliability.cluster import assert_healthy, ends, wait_for_cycles
from tests.runtime.scenarios import CPU_HOT
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration

TOKEN = "tok-5f3a9e1c-SECRET-b7d2-40aa"
PASSWORD = "pw-8c41d0-SECRET-e95f"


def everything_in(client: redis.Redis) -> str:
    """Every key and value of the database as text (tests only: KEYS and full reads)."""
    out = []
    for key in client.keys("*"):
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_no_secret_in_logs_results_state_or_output(
    redis_server_factory: Callable[..., Any], pvesim_factory: Callable[..., Any],
    deployment_factory: Callable[..., Any],
) -> None:
    scenario = copy.deepcopy(CPU_HOT)
    scenario["auth"] = {"token_value": TOKEN}
    running = pvesim_factory(scenario, speed=10.0)
    sim = running.sim
    server = redis_server_factory(password=PASSWORD, appendonly=True)
    sim.fail_next_migration(202, "migration aborted")  # an error on the way
    sim.set_faults(error_rate=0.3, error_status=500, paths=[r"^/cluster/ha/"])
    deployment = deployment_factory(running, redis=server.url)
    assert PASSWORD in deployment.config_path.read_text(), "the password is really in use"
    assert deployment.env["PVE_TOKEN_VALUE"] == TOKEN, "and so is the token"
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(server.url)

    wait_until(lambda: len(ends(store)) >= 2, timeout=60, what="a failed and a good migration")
    sim.clear_faults()
    server.restart()  # connection errors and reconnects get logged too
    wait_for_cycles(sim, 6)
    task_id = deployment.call("call", "balancer.evaluate").strip()
    outputs = [deployment.call("result", task_id)]
    for args in (["status"], ["status", "--json"], ["history", "--json"], ["check-config"]):
        result = deployment.cli(*args)
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    server.stop()
    unreachable = deployment.cli("status")
    assert unreachable.returncode != 0 and "not reachable" in unreachable.stderr
    outputs += [unreachable.stdout, unreachable.stderr]
    server.start()

    assert_healthy(deployment)
    searched = {
        "logs": deployment.logs(),
        "redis": everything_in(redis.Redis.from_url(server.url)),
        "outputs": "\n".join(outputs),
        "history": repr(store.history.events()) + repr(store.history.decisions()),
    }
    assert "failed" in searched["history"] and "migration aborted" in searched["history"]
    for where, text in searched.items():
        for secret in (TOKEN, PASSWORD):
            assert secret not in text, f"{secret} leaked into {where}"
