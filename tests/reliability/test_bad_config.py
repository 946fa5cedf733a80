"""A worker (or beat) with a bad configuration refuses to start: it exits non-zero within
seconds, says which key is wrong and what is allowed, never echoes the secret, and writes
nothing to Redis (it never ran half-configured)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from balancer.config import ConfigError, load_config
from tests.support.celery_worker import REPO, write_config

pytestmark = pytest.mark.integration

TOKEN = "9d3b5c0e-secret-token-value"
EXIT_CONFIG = 3  # tasks/app.py, like `pve-balancer`
#: Importing Celery and the app takes about a second; a refusal must not take much longer.
QUICK = 20.0

Change = Callable[[dict[str, Any]], None]


def _set(section: str, key: str, value: Any) -> Change:
    def change(doc: dict[str, Any]) -> None:
        doc.setdefault(section, {})[key] = value
    return change


def _drop(section: str, key: str) -> Change:
    def change(doc: dict[str, Any]) -> None:
        del doc[section][key]
    return change


#: (change, what stderr must say). Each names the key; range/choice errors say what is allowed.
BAD: dict[str, tuple[Change, tuple[str, ...]]] = {
    "interval-zero": (_set("balancing", "interval_seconds", 0),
                      ("balancing.interval_seconds", "allowed 0.1..3600")),
    "window-as-text": (_set("balancing", "ema_window_seconds", "60s"),
                       ("balancing.ema_window_seconds", "0.2..86400")),
    "window-too-short": (_set("balancing", "ema_window_seconds", 0.5),
                         ("balancing.ema_window_seconds", "at least 2 x")),
    "negative-cooldown": (_set("balancing", "migration_cooldown_seconds", -5),
                          ("balancing.migration_cooldown_seconds", "allowed 0..604800")),
    "margin-nan": (_set("balancing", "safety_margin", float("nan")),
                   ("balancing.safety_margin", "0.0..0.3")),
    "dry-run-text": (_set("balancing", "dry_run", "yes"),
                     ("balancing.dry_run", "true or false")),
    "typo": (_set("balancing", "intervall_seconds", 5),
             ("balancing.intervall_seconds", "interval_seconds")),
    "host-url": (_set("proxmox", "hosts", ["https://pve1:8006/api2/json"]),
                 ("proxmox.hosts", "host:port")),
    "no-user": (_drop("proxmox", "user"), ("proxmox.user", "required")),
    "timeout-negative": (_set("proxmox", "timeout_seconds", -1),
                         ("proxmox.timeout_seconds", "allowed 0.5..300")),
    "log-level": (_set("logging", "level", "VERBOSE"), ("logging.level", "INFO")),
    "redis-http": (_set("redis", "url", "http://127.0.0.1:6379/0"),
                   ("redis.url", "redis://")),
}


def _command(kind: str) -> list[str]:
    base = [sys.executable, "-m", "celery", "-A", "tasks"]
    if kind == "beat":
        return [*base, "beat", "--loglevel", "INFO"]
    return [*base, "worker", "--loglevel", "INFO", "--concurrency", "1", "--without-mingle",
            "--without-gossip"]


#: The ones started as real processes (each costs a Celery import); the rest are read in-process.
PROCESSES = {"interval-zero": "beat", "window-as-text": "worker", "typo": "worker",
             "window-too-short": "worker"}


def bad_config(tmp_path: Path, redis_url: str, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    write_config(config, "127.0.0.1:8006", "balancer@pve", "balancer", redis_url)
    doc = yaml.safe_load(config.read_text())
    BAD[name][0](doc)
    config.write_text(yaml.safe_dump(doc))
    return config


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_invalid_value_names_the_key_and_what_is_allowed(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(bad_config(tmp_path, "redis://127.0.0.1:6379/0", name),
                    env={"PVE_TOKEN_VALUE": TOKEN})
    for expected in BAD[name][1]:
        assert expected in str(error.value)
    assert TOKEN not in str(error.value)


def test_bad_config_refuses_to_start_and_names_the_key(tmp_path: Path, redis_url: str) -> None:
    """A few cases as real processes, all at once (each mostly waits for its imports)."""
    started: list[tuple[str, subprocess.Popen[bytes], tuple[str, ...]]] = []
    for name, kind in PROCESSES.items():
        config = bad_config(tmp_path, redis_url, name)
        expected = (*BAD[name][1], "config error")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY", "REDIS"))}
        env.update(BALANCER_CONFIG=str(config), PVE_TOKEN_VALUE=TOKEN, PYTHONPATH=str(REPO))
        process = subprocess.Popen(_command(kind), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        started.append((f"{kind} {name}", process, expected))

    began = time.monotonic()
    try:
        failures = [f for name, process, expected in started
                    for f in _refused(name, process, expected)]
    finally:
        for _, process, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert not failures, "\n".join(failures)
    assert time.monotonic() - began < QUICK
    assert redis.Redis.from_url(redis_url).dbsize() == 0, "nothing ran half-configured"


def _refused(name: str, process: subprocess.Popen[bytes], expected: tuple[str, ...]) -> list[str]:
    """What is wrong with how this process refused its config (nothing, hopefully)."""
    try:
        out, err = process.communicate(timeout=QUICK)
    except subprocess.TimeoutExpired:
        return [f"{name}: still running after {QUICK}s"]
    text = (out + err).decode(errors="replace")
    failures = []
    if process.returncode != EXIT_CONFIG:
        failures.append(f"{name}: exited {process.returncode}, not {EXIT_CONFIG}")
    missing = [e for e in expected if e not in err.decode(errors="replace")]
    if missing:
        failures.append(f"{name}: stderr lacks {missing}: {text[-600:]}")
    if TOKEN in text:
        failures.append(f"{name}: the token value was printed")
    return failures
