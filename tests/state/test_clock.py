"""RedisClock: every host reads the time from Redis, and a Redis outage never raises."""

from __future__ import annotations

import redis

from balancer.state.clock import RedisClock


def test_reads_redis_time_and_keeps_counting_between_syncs(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    clock = RedisClock(client, resync_seconds=3600)
    seconds, micros = client.time()
    first = clock()
    assert abs(first - (seconds + micros / 1e6)) < 1.0
    assert clock() >= first  # monotonic between syncs


def test_an_unreachable_redis_falls_back_without_raising() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    clock = RedisClock(client)
    assert isinstance(clock(), float)
