"""One clock for the whole deployment: Redis's.

Workers, beat and the CLI run on different hosts whose clocks may disagree by seconds or hours;
every time they share (cooldown and backoff ends, EMA sample times, lock and history stamps)
is therefore read from Redis, the one coordination point. `TIME` is asked once per
`resync_seconds`; in between, the local monotonic clock (immune to wall-clock steps) carries
the offset forward, so a cycle costs no extra round trips.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

#: How often Redis's clock is asked again (drift of a monotonic clock is ppm, not seconds).
RESYNC_SECONDS = 60.0


class RedisClock:
    """A callable returning epoch seconds by Redis's clock. Never raises: while Redis does not
    answer it keeps counting from the last reading (or the local clock, before the first)."""

    def __init__(self, client: redis.Redis, resync_seconds: float = RESYNC_SECONDS) -> None:
        self._client = client
        self._resync = resync_seconds
        self._lock = threading.Lock()
        self._epoch_at_sync: float | None = None
        self._mono_at_sync = 0.0

    def __call__(self) -> float:
        mono = time.monotonic()
        with self._lock:
            if self._epoch_at_sync is None or mono - self._mono_at_sync >= self._resync:
                self._sync(mono)
            if self._epoch_at_sync is None:
                return time.time()
            return self._epoch_at_sync + (mono - self._mono_at_sync)

    def _sync(self, mono: float) -> None:
        try:
            seconds, micros = self._client.time()
        except redis.exceptions.RedisError as exc:
            log.debug("Redis TIME failed (%s); keeping the last offset", exc)
            return
        after = time.monotonic()
        self._epoch_at_sync = float(seconds) + float(micros) / 1e6
        self._mono_at_sync = (mono + after) / 2  # the answer was made between both readings
