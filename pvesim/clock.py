"""Simulated time: a fast-forwardable clock, plus value histories indexed by that time.

Everything time-dependent is derived lazily from `SimClock.now()`, so a speed factor of 100
needs no background loop, and `advance()` makes tests deterministic.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class SimClock:
    """Epoch seconds that run `speed` times faster than real time and can jump forward."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self.start = time.time() if start is None else start
        self._base_sim = self.start
        self._base_mono = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return self._base_sim + (time.monotonic() - self._base_mono) * self._speed

    def elapsed(self) -> float:
        """Simulated seconds since the simulation started."""
        return self.now() - self.start

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._base_sim += seconds

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        now = self.now()
        self._base_sim, self._base_mono, self._speed = now, time.monotonic(), speed


class Timeline(Generic[T]):
    """A value that changes at known instants; `at(t)` answers for any past time cheaply."""

    def __init__(self, initial: T) -> None:
        self._times: list[float] = [-math.inf]
        self._values: list[T] = [initial]

    def set(self, t: float, value: T) -> None:
        if value == self._values[-1]:
            return
        if t <= self._times[-1]:
            # Same instant (or clock skew inside one event batch): the latest write wins.
            self._values[-1] = value
            return
        self._times.append(t)
        self._values.append(value)

    def at(self, t: float) -> T:
        values = self._values
        if len(values) == 1:  # never changed: the common case, and hot in RRD history
            return values[0]
        return values[bisect.bisect_right(self._times, t) - 1]

    @property
    def current(self) -> T:
        return self._values[-1]
