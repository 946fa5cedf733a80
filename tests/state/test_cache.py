from __future__ import annotations

import redis

from balancer.cache import JsonCache
from balancer.state import RedisJsonCache, StateStore
from tests.support.redis_server import wait_until


def test_round_trip_and_miss(store: StateStore, raw: redis.Redis) -> None:
    cache: JsonCache = store.cache
    assert cache.get("ha/rules") is None
    cache.set("ha/rules", [{"rule": "r1", "nodes": ["a", "b"]}], 60)
    assert cache.get("ha/rules") == [{"rule": "r1", "nodes": ["a", "b"]}]
    key = store.cache.cache_key("ha/rules")
    assert key == "test-pvb:cache:ha/rules"
    assert 0 < raw.pttl(key) <= 60_000


def test_entries_expire(store: StateStore) -> None:
    store.cache.set("cluster/options", {"migration": "secure"}, 0.2)
    assert store.cache.get("cluster/options") == {"migration": "secure"}
    wait_until(lambda: store.cache.get("cluster/options") is None, timeout=5,
               what="cache expiry")


def test_non_positive_ttl_drops_and_bad_json_is_a_miss(store: StateStore,
                                                        raw: redis.Redis) -> None:
    store.cache.set("x", 1, 60)
    store.cache.set("x", 2, 0)
    assert store.cache.get("x") is None
    raw.set(store.cache.cache_key("y"), "{broken", px=60_000)
    assert store.cache.get("y") is None


def test_namespaced_by_prefix(store: StateStore) -> None:
    other = RedisJsonCache(store.client, "other:")
    store.cache.set("k", "mine", 60)
    assert other.get("k") is None
