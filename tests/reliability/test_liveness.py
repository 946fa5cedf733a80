"""Issue 20: liveness. Every evaluate stamps Redis; `status`, the exporter and the health check
say when the last one ran, and the health check fails once evaluates stop."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from balancer.config import load_config
from balancer.exporter import start_exporter
from tests.reliability.cluster import wait_for_cycles
from tests.runtime.scenarios import BALANCED
from tests.support.celery_worker import REPO
from tests.support.redis_server import wait_until

pytestmark = pytest.mark.integration


def test_evaluates_stamp_redis_and_the_health_check_notices_when_they_stop(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
) -> None:
    running = pvesim_factory(BALANCED, speed=10.0)
    deployment = deployment_factory(running)
    deployment.start_worker()
    beat = deployment.start_beat()
    wait_for_cycles(running.sim, 3, timeout=30)

    status = json.loads(deployment.cli("status", "--json").stdout)
    at = datetime.strptime(status["last_evaluate_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert at.replace(tzinfo=UTC).timestamp() > running.sim.start_time - 60
    assert isinstance(status["last_evaluate_age_seconds"], float)

    exporter = start_exporter(load_config(deployment.config_path, env=deployment.env),
                              port=0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics") as reply:
            body = reply.read().decode()
    finally:
        exporter.close()
    [line] = [x for x in body.splitlines()
              if x.startswith("pve_balancer_last_evaluate_timestamp_seconds{")]
    assert line.startswith('pve_balancer_last_evaluate_timestamp_seconds{cluster="')
    assert abs(float(line.split()[-1]) - at.replace(tzinfo=UTC).timestamp()) < 60

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO / "docker" / "healthcheck.py")],
                              cwd=REPO, env=deployment.env, capture_output=True, text=True,
                              timeout=30)

    assert health().returncode == 0
    beat.stop()  # no scheduler: no more evaluates
    wait_until(lambda: health().returncode == 1, timeout=30,
               what="the health check to notice that evaluates stopped")
    assert "unhealthy: no evaluate for" in health().stderr
