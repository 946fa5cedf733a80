from __future__ import annotations

import redis

from balancer.state import StateStore
from tests.support.redis_server import wait_until


def test_beat_alive_info_stop(store: StateStore, raw: redis.Redis) -> None:
    hb = store.heartbeat
    assert hb.alive() is False and hb.info() is None
    assert hb.beat("t1", 10, now=1000.0)
    assert hb.alive()
    info = hb.info()
    assert info is not None and info.at == 1000.0 and 0 < info.ttl_remaining <= 10
    assert 0 < raw.pttl(hb.hb_key) <= 10_000
    assert hb.stop("other") is False and hb.alive()
    assert hb.stop("t1") is True and not hb.alive()


def test_another_token_cannot_beat(store: StateStore) -> None:
    hb = store.heartbeat
    assert hb.beat("t1", 10, now=1.0)
    assert hb.beat("t2", 10, now=2.0) is False
    info = hb.info()
    assert info is not None and info.at == 1.0
    assert hb.beat("t1", 10, now=3.0)


def test_heartbeat_expires(store: StateStore) -> None:
    hb = store.heartbeat
    assert hb.beat("t1", 0.2)
    wait_until(lambda: not hb.alive(), timeout=5, what="heartbeat expiry")
    assert hb.beat("t2", 10)  # a dead follower's slot is free
