"""Fault injection for the clock tests: this process's wall clock runs
`PVE_BALANCER_TEST_CLOCK_OFFSET` seconds off (a host whose NTP is broken). Put on PYTHONPATH
only by `BalancerDeployment` when a test asks for an offset; the monotonic clock is untouched,
as on a real host."""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_OFFSET = float(os.environ.get("PVE_BALANCER_TEST_CLOCK_OFFSET", "0") or 0)

if _OFFSET:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _time.time = lambda: _real_time() + _OFFSET
    _time.time_ns = lambda: _real_time_ns() + int(_OFFSET * 1e9)
    _SHIFT = _datetime.timedelta(seconds=_OFFSET)
    _Base = _datetime.datetime

    class _SkewedDatetime(_Base):
        """Instances of this class, so `isinstance(x, datetime)` keeps holding everywhere."""

        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _datetime.datetime:  # type: ignore[override]
            shifted = _Base.now(tz) + _SHIFT
            return cls.combine(shifted.date(), shifted.timetz())

        @classmethod
        def utcnow(cls) -> _datetime.datetime:  # type: ignore[override]
            shifted = _Base.utcnow() + _SHIFT
            return cls.combine(shifted.date(), shifted.timetz())

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
