"""Proactive holds (issue 15): how long a node has stayed above, on a real redis-server."""

from __future__ import annotations

import redis

from balancer.state import StateStore


def test_a_hold_grows_over_consecutive_cycles(store: StateStore) -> None:
    holds = store.holds
    assert holds.observe(["pve1"], gap=15, ttl=600, now=100) == {"pve1": 0.0}
    assert holds.observe(["pve1", "pve2"], gap=15, ttl=600, now=105) == {
        "pve1": 5.0, "pve2": 0.0}
    assert holds.observe(["pve1"], gap=15, ttl=600, now=110) == {"pve1": 10.0}


def test_below_once_and_the_hold_starts_over(store: StateStore) -> None:
    holds = store.holds
    holds.observe(["pve1"], gap=15, ttl=600, now=100)
    holds.observe([], gap=15, ttl=600, now=105)
    assert holds.observe(["pve1"], gap=15, ttl=600, now=110) == {"pve1": 0.0}


def test_cycles_too_far_apart_are_not_consecutive(store: StateStore) -> None:
    holds = store.holds
    holds.observe(["pve1"], gap=15, ttl=600, now=100)
    assert holds.observe(["pve1"], gap=15, ttl=600, now=130) == {"pve1": 0.0}


def test_peek_records_nothing_and_the_hold_survives_a_new_client(
        store: StateStore, redis_url: str, raw: redis.Redis) -> None:
    store.holds.observe(["pve1"], gap=15, ttl=600, now=100)
    assert store.holds.peek(["pve1"], gap=15, now=112) == {"pve1": 12.0}
    other = StateStore.from_url(redis_url, prefix=store.prefix)  # a restarted worker
    assert other.holds.observe(["pve1"], gap=15, ttl=600, now=105) == {"pve1": 5.0}
    assert 0 < raw.pttl(store.holds.hold_key) <= 600_000
