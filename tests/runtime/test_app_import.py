"""Importing `tasks` reads no config (issue 14): a test, a linter or a REPL can import it;
the worker and beat read the config when Celery first needs its settings, and exit 3 on a
bad one (`tests/reliability/test_bad_config.py` shows that for real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import tasks
print("imported", type(tasks.app).__name__, flush=True)
try:
    tasks.app.conf.broker_url
except SystemExit as exc:
    print("settings: exit", exc.code)
"""


def _probe(config: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BALANCER_CONFIG": config, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)


def test_importing_tasks_without_a_config_does_not_exit() -> None:
    probe = _probe("/nonexistent/balancer.yaml")
    assert probe.stdout.splitlines() == ["imported Celery", "settings: exit 3"], probe.stderr
    assert "config error: cannot read config file /nonexistent/balancer.yaml" in probe.stderr


def test_the_settings_come_from_the_config_when_first_needed() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import tasks; c = tasks.app.conf; "
         "print(c.task_acks_late, c.beat_scheduler, c.beat_schedule['evaluate']['schedule'])"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "BALANCER_CONFIG": str(ROOT / "config" / "balancer.yaml.example")})
    assert probe.stdout.split() == ["True", "tasks.reconnect:BalancerScheduler", "5"], (
        probe.stderr)
