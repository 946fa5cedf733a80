"""Riding out a Redis restart: the worker's consumer and beat's scheduler, hardened.

Redis is broker, result backend and beat's schedule store at once, so a Redis restart (or a
failover that loses data) hits every process together. Celery and RedBeat as shipped do not
survive it:

* Celery 5.7's consumer closes the lost connection twice after a connection error; when it
  held unacknowledged messages (with `acks_late`, nearly always: a poll waiting for its
  countdown, a running task), the second close tries to restore them through a transport it
  already dropped and the worker dies with `AttributeError: 'NoneType' object has no
  attribute 'hostname'` instead of reconnecting. `BalancerConsumer` lets that close fail and
  goes on reconnecting; the messages come back through the visibility timeout (every task is
  idempotent for that case).
* RedBeat's `tick` raises out of beat on any Redis error: `ConnectionError` while Redis is
  down, `LockNotOwnedError` once a Redis without persistence comes back without beat's leader
  lock. Beat exits and nothing schedules evaluates any more. Without persistence the schedule
  entries are gone too, so even a beat that survived (or a standby beat that now gets the
  free lock) would never send a task again. `BalancerScheduler` waits while Redis is away,
  takes the leader lock again (or stands by when another beat got it first), reinstalls a
  lost schedule, and shuts down cleanly even when Redis is gone.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.worker.consumer import Consumer
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

log = logging.getLogger("balancer.reconnect")

#: Seconds beat waits between attempts while Redis does not answer.
BEAT_RETRY_SECONDS = 1.0


class BalancerConsumer(Consumer):
    """Celery's consumer, surviving the broken double close after a lost connection."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as broken:
            # The connection is already detached (`self.connection` is None): only its
            # cleanup failed. Reconnecting is what matters; Celery does that next.
            log.warning("broker connection cleanup failed after %r: %r; reconnecting anyway",
                        exc, broken)


class BalancerScheduler(RedBeatScheduler):
    """RedBeat that waits out Redis outages, regains (or yields) leadership after one and puts
    back a schedule that Redis lost."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock_key and self.lock is None:
                # The blocking acquire at start-up failed (Redis was away): keep trying.
                return self._regain_leadership()
            if self._schedule_lost():
                log.warning("beat: the schedule is gone from Redis (restarted without "
                            "persistence?); installing it again")
                self.setup_schedule()
            return float(super().tick(*args, **kwargs))
        except redis.exceptions.LockNotOwnedError:
            return self._regain_leadership()
        except redis.exceptions.RedisError as exc:
            log.warning("beat: Redis unavailable (%s: %s); retrying in %gs",
                        type(exc).__name__, exc, BEAT_RETRY_SECONDS)
            return BEAT_RETRY_SECONDS

    def close(self) -> None:
        """Shutting down while Redis is away must not crash beat: the leader lock it cannot
        release expires by itself (`redbeat_lock_timeout`)."""
        try:
            super().close()
        except redis.exceptions.RedisError as exc:
            log.warning("beat: could not release the leader lock (%s); it expires by itself",
                        exc)

    def _schedule_lost(self) -> bool:
        """Whether Redis no longer knows our static entries (one EXISTS per tick). A standby
        beat that took the lock over after such a loss would otherwise schedule nothing."""
        conf = self.app.redbeat_conf
        return bool(conf.schedule) and not get_redis(self.app).exists(conf.statics_key)

    def _regain_leadership(self) -> float:
        """Our leader lock is gone (expired, or Redis lost its data) or was never taken. Take it
        if it is free; if another beat holds it, stand by and ask again next tick."""
        lock: Any = getattr(self, "lock", None)
        if lock is None:  # made as RedBeat's start-up does (`acquire_distributed_beat_lock`)
            client = get_redis(self.app)
            lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
            self.lock = lock
        if not lock.acquire(blocking=False):
            log.info("beat: another beat leads; standing by")
            return float(self.max_interval)
        log.warning("beat: leader lock regained")
        return 0.0
