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
* After such a reconnect, a task that was running finishes and kombu acknowledges its message
  through the dropped channel: the same AttributeError, raised this time in the worker's event
  loop, kills the worker ("Unrecoverable error"; found by the chaos test). `tolerate_lost_acks`
  makes that ack fail like any other lost-connection ack: logged, and the message comes back
  through the visibility timeout.
* Started while Redis is down, RedBeat dies in its constructor (`setup_schedule` reads the
  schedule): `celery beat` printed ~170 lines of traceback and exited 1, and `worker -B` went on
  without its scheduler, so no evaluate ever ran. `BalancerScheduler` waits for Redis there,
  with a capped backoff and one log line per change; and `BeatWatchdog` ends a `worker -B`
  (exit code 1) whose embedded beat died anyway, so a supervisor restarts it.

These reach into Celery's, kombu's and RedBeat's internals, so pyproject.toml bounds them to
the minor versions tested here (celery and kombu < 5.8, celery-redbeat < 2.5); the chaos and
Redis-restart tests say whether a new version still needs each patch. Upstream reports of the
same failures:
* RedBeat: beat dies on `LockNotOwnedError` in `tick` (sibson/redbeat#230) and after a Redis
  connection error (sibson/redbeat#285).
* Celery/kombu: the worker stops consuming after the broker connection is reset
  (celery/celery#10205); `AttributeError: 'NoneType' object has no attribute 'hostname'`
  while a lost Redis channel is closed (celery/kombu#582).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from kombu.message import Message
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

from balancer.state.store import redis_py_url

log = logging.getLogger("balancer.reconnect")

#: Seconds beat waits between attempts while Redis does not answer.
BEAT_RETRY_SECONDS = 1.0
#: At start-up: the first wait for Redis, doubled up to the cap.
STARTUP_RETRY_SECONDS = 0.5
STARTUP_RETRY_CAP_SECONDS = 10.0
#: How often a `worker -B` checks that its embedded beat still runs.
WATCHDOG_SECONDS = 2.0
#: Exit status of a worker whose scheduler died (EX_SOFTWARE).
SCHEDULER_DIED = 70


def tolerate_lost_acks() -> None:
    """kombu's `Message.ack_log_error` logs connection errors but lets the AttributeError of a
    channel whose connection was dropped escape into the worker's event loop."""
    if getattr(Message.ack_log_error, "_pve_balancer_tolerant", False):
        return
    original = Message.ack_log_error

    def ack_log_error(self: Message, logger: Any, errors: Any, multiple: bool = False) -> None:
        try:
            original(self, logger, errors, multiple)
        except AttributeError as exc:
            logger.warning("could not ack %r on a channel whose connection was lost (%r); the "
                           "message comes back after the visibility timeout",
                           self.delivery_tag, exc)

    ack_log_error._pve_balancer_tolerant = True  # type: ignore[attr-defined]
    Message.ack_log_error = ack_log_error  # type: ignore[method-assign]


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


def _socket_client_for_redbeat(app: Any) -> None:
    """RedBeat connects with redis-py, which reads a socket as unix://, not as kombu's
    redis+socket://. Its client is handed over here rather than through
    `redbeat_redis_url`: Celery masks the broker URL's password where it shows the settings
    (Flower's worker config), not a setting of RedBeat's."""
    url = str(app.conf.broker_url or "")
    if url.startswith("redis+socket://") and getattr(app, "redbeat_redis", None) is None:
        app.redbeat_redis = redis.Redis.from_url(redis_py_url(url), decode_responses=True)


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

    #: A start-up wait for Redis is under way in this process; or a shutdown interrupted it.
    #: Celery's SIGTERM handler builds the scheduler again (to close it) while the first one
    #: is still being built: that second one must neither wait nor print a traceback.
    _waiting = False
    _stopping = False

    def setup_schedule(self) -> None:
        """RedBeat reads and writes its schedule here, in the constructor: wait for Redis."""
        _socket_client_for_redbeat(self.app)
        if BalancerScheduler._waiting or BalancerScheduler._stopping:
            BalancerScheduler._stopping = True
            return
        delay, waiting = STARTUP_RETRY_SECONDS, False
        try:
            while True:
                try:
                    super().setup_schedule()
                except redis.exceptions.RedisError as exc:
                    if BalancerScheduler._stopping:
                        return
                    if not waiting:
                        log.warning("beat: waiting for Redis (%s); retrying with backoff up "
                                    "to %gs", type(exc).__name__, STARTUP_RETRY_CAP_SECONDS)
                        waiting = BalancerScheduler._waiting = True
                    time.sleep(delay)
                    delay = min(2 * delay, STARTUP_RETRY_CAP_SECONDS)
                    continue
                if waiting:
                    log.warning("beat: Redis answers; schedule installed")
                return
        except (SystemExit, KeyboardInterrupt):  # SIGTERM/SIGINT while waiting
            BalancerScheduler._stopping = True
            raise
        finally:
            BalancerScheduler._waiting = False

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


class BeatWatchdog(bootsteps.StartStopStep):
    """In `celery worker -B`, end the worker (exit status 70) when its embedded beat died: a
    worker without its scheduler looks healthy and never evaluates again."""

    requires = ("celery.worker.components:Beat",)

    def start(self, worker: Any) -> None:
        beat = getattr(worker, "beat", None)
        if beat is not None and worker.timer is not None:
            worker.timer.call_repeatedly(WATCHDOG_SECONDS, self._check, (beat,))

    @staticmethod
    def _check(beat: Any) -> None:
        if beat.is_alive() or worker_state.should_stop is not None:
            return
        log.critical("the embedded beat (worker -B) died; stopping the worker so that it is "
                     "restarted with a scheduler (exit status %d)", SCHEDULER_DIED)
        worker_state.should_stop = SCHEDULER_DIED


tolerate_lost_acks()
