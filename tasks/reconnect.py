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
  entries are gone too, so even a beat that survived would never send a task again.
  `BalancerScheduler` waits while Redis is away, then takes the leader lock again (or stands by
  when another beat got it first) and reinstalls the schedule.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.worker.consumer import Consumer
from redbeat import RedBeatScheduler

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
    """RedBeat that waits out Redis outages and regains (or yields) leadership after one."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except redis.exceptions.LockNotOwnedError:
            return self._regain_leadership()
        except redis.exceptions.RedisError as exc:
            log.warning("beat: Redis unavailable (%s: %s); retrying in %gs",
                        type(exc).__name__, exc, BEAT_RETRY_SECONDS)
            return BEAT_RETRY_SECONDS

    def _regain_leadership(self) -> float:
        """Our leader lock is gone (expired, or Redis lost its data). Take it again if it is
        free and put the schedule back (a Redis without persistence lost it); if another beat
        holds it, stand by and ask again next tick."""
        try:
            if not self.lock.acquire(blocking=False):
                log.info("beat: another beat leads; standing by")
                return float(self.max_interval)
            self.setup_schedule()
        except redis.exceptions.RedisError as exc:
            log.warning("beat: cannot regain the leader lock (%s); retrying", exc)
            return BEAT_RETRY_SECONDS
        log.warning("beat: leader lock was lost (Redis restarted?); regained it and "
                    "reinstalled the schedule")
        return 0.0
