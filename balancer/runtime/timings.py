"""Every lock TTL, poll period and wait derived from one setting, `interval_seconds`.

Production (5 s) gets the values an operator expects (60 s lock, 2 min HA wait); tests and the
demo shrink the interval and every timing shrinks with it, so nothing waits in real minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from balancer.config import BalancingConfig


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@dataclass(frozen=True)
class Timings:
    interval: float
    #: "one evaluate at a time": long enough to cover a slow cycle, short enough to recover.
    eval_lock_ttl: float
    #: the migration lock; the poller extends it while PVE reports the task running.
    lock_ttl: float
    #: how often the poller asks PVE about the migration task.
    poll_interval: float
    #: a poller silent for this long is presumed dead and evaluate takes over.
    heartbeat_ttl: float
    #: how long to wait for HA to start the real move after our `hamigrate` request.
    ha_wait: float
    #: backoff after a failed migration: base x 2^(failures-1), capped.
    backoff_base: float
    backoff_max: float
    #: how long "unmigratable" (PVE's precondition said no) is remembered.
    unmigratable_ttl: float
    #: how long the EMA store lives without updates.
    ema_ttl: float
    #: every PVE read of one evaluate, failover included, ends by then: inside the task's
    #: soft time limit (`eval_lock_ttl`), with room left to decide and record.
    cycle_deadline: float
    #: the re-check before the migrate POST ends by then, well inside the lock's TTL.
    recheck_deadline: float
    #: evaluations further apart than this are not consecutive: a proactive hold starts over
    #: (a few missed cycles are tolerated; a migration in flight, minutes long, is not).
    hold_gap: float
    #: how long what a cycle publishes for readers (nodes, broken rules, drains) stays.
    published_ttl: float

    @classmethod
    def from_config(cls, balancing: BalancingConfig) -> Timings:
        interval = balancing.interval_seconds
        poll = _clamp(interval, 0.2, 5.0)
        return cls(
            interval=interval,
            eval_lock_ttl=_clamp(4 * interval, 2.0, 30.0),
            lock_ttl=_clamp(12 * interval, 5.0, 60.0),
            poll_interval=poll,
            heartbeat_ttl=max(3 * poll, 2.0),
            ha_wait=_clamp(24 * interval, 10.0, 300.0),
            backoff_base=_clamp(12 * interval, 2.0, 60.0),
            backoff_max=_clamp(720 * interval, 60.0, 3600.0),
            unmigratable_ttl=_clamp(720 * interval, 60.0, 3600.0),
            ema_ttl=max(10 * balancing.ema_window_seconds, 60.0),
            cycle_deadline=0.7 * _clamp(4 * interval, 2.0, 30.0),
            recheck_deadline=0.4 * _clamp(12 * interval, 5.0, 60.0),
            hold_gap=3 * interval,
            published_ttl=max(60.0, 10 * interval),
        )
