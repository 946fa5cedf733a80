"""Flower works for real: it sees `balancer.evaluate` tasks with their decisions, behind basic
auth, and shows neither the PVE token nor the Redis password anywhere."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.runtime.scenarios import CPU_HOT
from tests.support.celery_worker import BalancerDeployment
from tests.support.redis_server import RedisServer, free_port, wait_until

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "redis-pw-7f3a9c"
FLOWER_AUTH = ("ops", "flower-pw-1b2c")


@pytest.fixture
def private_redis(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(password=REDIS_PASSWORD)


def test_flower_shows_evaluate_results_without_secrets(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    deployment: BalancerDeployment = deployment_factory(running)
    deployment.env["REDIS_URL"] = private_redis.url
    deployment.start_worker()
    port = free_port()
    flower = deployment.start_flower(port, basic_auth=":".join(FLOWER_AUTH))
    base = f"http://127.0.0.1:{port}"

    def flower_up() -> bool:
        try:
            return requests.get(f"{base}/healthcheck", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(flower_up, timeout=60, what="flower listening")
    assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401, "basic auth"

    def evaluated_tasks() -> dict[str, Any]:
        deployment.call("call", "balancer.evaluate")
        tasks = requests.get(f"{base}/api/tasks", params={"taskname": "balancer.evaluate"},
                             auth=FLOWER_AUTH, timeout=5).json()
        return {k: t for k, t in tasks.items() if t.get("state") == "SUCCESS"}

    tasks = wait_until(evaluated_tasks, timeout=60, interval=0.5, what="evaluate in Flower")
    results = [str(t["result"]) for t in tasks.values()]
    assert any("'action':" in r and "'explanation':" in r for r in results), results

    pages = [requests.get(f"{base}{path}", auth=FLOWER_AUTH, timeout=10).text
             for path in ("/api/tasks", "/api/workers", "/broker", "/workers", "/tasks")]
    for text in [*pages, flower.log(), deployment.logs()]:
        assert running.token_value not in text
        assert REDIS_PASSWORD not in text

    # Issue 20.6: /metrics asks for the login too; the lock token never shows in task args.
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{base}/metrics", auth=FLOWER_AUTH, timeout=5).status_code == 200

    def steps() -> list[dict[str, Any]]:
        deployment.call("call", "balancer.evaluate")  # until the EMA is warm and it moves
        found = requests.get(f"{base}/api/tasks", auth=FLOWER_AUTH, timeout=5).json()
        return [t for t in found.values()
                if t.get("name") in ("balancer.migrate", "balancer.poll_migration")]

    shown = wait_until(steps, timeout=60, interval=0.5, what="migrate and poll in Flower")
    for task in shown:
        args = ast.literal_eval(str(task["args"]))
        token_at = 3 if task["name"] == "balancer.migrate" else 1
        assert args[token_at] == "***", task["args"]


def test_flower_binds_loopback_by_default_and_guards_metrics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from flower.views import monitor

    from tasks.flower import DEFAULT_ADDRESS, secure_defaults

    monkeypatch.delenv("FLOWER_ADDRESS", raising=False)
    secure_defaults()
    assert os.environ["FLOWER_ADDRESS"] == DEFAULT_ADDRESS == "127.0.0.1"
    assert getattr(monitor.Metrics.get, "_pve_balancer_guarded", False)
    monkeypatch.setenv("FLOWER_ADDRESS", "0.0.0.0")
    secure_defaults()
    assert os.environ["FLOWER_ADDRESS"] == "0.0.0.0", "an explicit choice is kept"
