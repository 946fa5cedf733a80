"""The Celery application: broker, result backend and beat schedule all in the one Redis.

Loaded by `celery -A tasks worker|beat|call|flower`. The config comes from $BALANCER_CONFIG
(default /etc/pve-balancer/balancer.yaml) and is read when Celery first needs its settings
(`on_configure`), not at import: importing `tasks` (a test, a linter, a REPL) never exits. A
bad config stops the worker or beat with the error instead of running half-configured.
"""

from __future__ import annotations

import math
import sys
from functools import cache
from typing import Any

from celery import Celery

from balancer.config import Config, ConfigError, load_config
from balancer.runtime.timings import Timings

EVALUATE = "balancer.evaluate"
MIGRATE = "balancer.migrate"
POLL = "balancer.poll_migration"
NOTIFY = "balancer.notify"
BEAT_PREFIX = "pve-balancer-beat:"


@cache
def current_config() -> Config:
    """The process's configuration, read once on first use; exits 3 on a bad one."""
    try:
        return load_config()
    except ConfigError as exc:
        print(f"pve-balancer: config error: {exc}", file=sys.stderr)
        raise SystemExit(3) from None


def make_app(config: Config) -> Celery:
    """A Celery app configured from `config` at once (tests; the demo)."""
    app = Celery("pve-balancer")
    app.conf.update(settings(config))
    _add_steps(app)
    return app


def lazy_app() -> Celery:
    """The Celery app whose settings are read from the config file when first needed."""
    app = Celery("pve-balancer")
    app.on_configure.connect(_configure, weak=False)
    _add_steps(app)
    return app


def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(settings(current_config()))


def _add_steps(app: Celery) -> None:
    from tasks.reconnect import BeatWatchdog

    app.steps["worker"].add(BeatWatchdog)


def settings(config: Config) -> dict[str, Any]:
    """Celery settings for at-most-one-migration semantics."""
    interval = config.balancing.interval_seconds
    timings = Timings.from_config(config.balancing)
    url = config.redis.url.reveal()
    return dict(
        broker_url=url,
        result_backend=url,
        broker_connection_retry_on_startup=True,
        # A message is acknowledged only after its task ran; a killed worker's message comes
        # back after the visibility timeout, and every task is idempotent for that case.
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 300},
        result_backend_transport_options={"visibility_timeout": 300},
        result_expires=3600,
        result_extended=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Flower sees workers and tasks without extra flags.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        # Both survive a Redis restart instead of exiting (see tasks/reconnect.py).
        worker_consumer="tasks.reconnect:BalancerConsumer",
        beat_scheduler="tasks.reconnect:BalancerScheduler",
        redbeat_key_prefix=BEAT_PREFIX,
        # Only one beat schedules; its leader lock expires within a few intervals so a killed
        # beat is replaced quickly (RedBeat's default would be 25 minutes).
        redbeat_lock_timeout=max(5, math.ceil(4 * interval)),
        beat_max_loop_interval=max(0.5, interval),
        beat_schedule=beat_schedule(config),
        task_annotations={
            EVALUATE: {"soft_time_limit": timings.eval_lock_ttl,
                       "time_limit": timings.eval_lock_ttl + 5},
            MIGRATE: {"soft_time_limit": 120, "time_limit": 150},
            POLL: {"soft_time_limit": 60, "time_limit": 75},
            NOTIFY: {"soft_time_limit": 60, "time_limit": 75},
        },
    )


def beat_schedule(config: Config) -> dict[str, Any]:
    interval = config.balancing.interval_seconds
    schedule: dict[str, Any] = {
        "evaluate": {
            "task": EVALUATE,
            "schedule": interval,
            # No `expires`: Celery turns it into a time by beat's clock and compares it
            # with the worker's, so a beat 30 s behind had every cycle discarded. A backlog
            # is dropped by the worker instead, by Redis's clock (evaluate's `scheduled`).
            "kwargs": {"scheduled": True},
        },
    }
    if config.notifications.urls:
        # Sends what evaluate, the migration's end and the CLI queued (never in a cycle).
        schedule["notify"] = {"task": NOTIFY, "schedule": max(interval, 5.0)}
    return schedule


app = lazy_app()
