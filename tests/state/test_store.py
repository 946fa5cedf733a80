from __future__ import annotations

import contextlib

import pytest
import redis

from balancer.engine.types import CpuReading
from balancer.migrations import EventKind, MigrationEvent
from balancer.state import (
    CpuEmaStore,
    GuestMarks,
    Heartbeat,
    History,
    MigrationLock,
    RedisJsonCache,
    StateStore,
    key_count,
)
from balancer.state.keys import text
from tests.support.redis_server import RedisServer

NOW = 1_700_000_000.0


def exercise(store: StateStore, cycles: int = 1, now: float | None = None) -> None:
    """Touch every kind of key the store writes."""
    store.eval_lock.force_release()  # what a previous call left behind
    store.client.delete(store.heartbeat.hb_key)
    for cycle in range(cycles):
        token = store.lock.acquire(60)
        assert token is not None
        assert store.heartbeat.beat(token, 30)
        store.lock.attach(token, vmid=100 + cycle, upid=f"UPID:{cycle}")
        with store.eval_lock.hold(5):
            pass
        token2 = store.eval_lock.acquire(5)
        assert token2 is not None
        store.ema.update({f"pve{i}": 0.5 for i in range(5)}, 1000.0 + cycle, 0.2,
                         {f"pve{i}" for i in range(5)})
        store.ema.shift("pve1", -0.1)
        store.marks.set_cooldown(100 + cycle, 600, "moved", now=now)
        store.marks.record_failure(200 + cycle, "err", now=now)
        store.marks.mark_unmigratable(300 + cycle, "local disk", now=now)
        store.marks.blocked(now=now)
        store.history.record_decision({"id": cycle})
        store.history.record_migration_event(
            MigrationEvent(EventKind.SUCCEEDED, vmid=100 + cycle, at=float(cycle)))
        store.cache.set("ha/status", {"cycle": cycle}, 60)
        store.holds.observe(["pve1"], gap=15, ttl=600, now=now)
        store.guest_ema.update({100 + cycle: 0.5}, sampled_at=1000.0 + cycle, alpha=0.5,
                               reset_after=60, ttl_seconds=600)
        store.cache.set("cluster/options", {}, 60)
        store.lock.release(token)
        if cycle < cycles - 1:  # the last cycle leaves its eval lock and heartbeat behind
            store.eval_lock.release(token2)
            store.heartbeat.stop(token)


def test_facade_parts_and_ping(store: StateStore) -> None:
    assert store.ping() is True
    assert isinstance(store.lock, MigrationLock) and store.lock.name == "migration"
    assert isinstance(store.eval_lock, MigrationLock) and store.eval_lock.name == "evaluate"
    assert isinstance(store.ema, CpuEmaStore)
    assert isinstance(store.marks, GuestMarks)
    assert isinstance(store.history, History)
    assert isinstance(store.cache, RedisJsonCache)
    assert isinstance(store.heartbeat, Heartbeat)
    with pytest.raises(ValueError):
        StateStore(store.client, prefix="")


def test_every_key_is_under_the_prefix_and_has_a_ttl(store: StateStore,
                                                     raw: redis.Redis) -> None:
    exercise(store)
    token = store.lock.acquire(60)  # keep a held lock in the picture too
    assert token is not None and store.lock.attach(token, vmid=1)
    keys = sorted(text(k) for k in raw.keys("*"))
    assert keys and all(k.startswith("test-pvb:") for k in keys)
    assert store.key_count() == len(keys)
    for key in keys:
        assert raw.ttl(key) > 0, key
    assert store.keys_without_ttl() == []
    assert set(keys) == {
        "test-pvb:lock:migration", "test-pvb:lock:migration:info",
        "test-pvb:lock:evaluate", "test-pvb:lock:evaluate:info",
        "test-pvb:heartbeat:poller", "test-pvb:ema:nodes", "test-pvb:marks",
        "test-pvb:ema:guests", "test-pvb:holds:proactive",
        "test-pvb:history:decisions", "test-pvb:history:migrations",
        "test-pvb:cache:ha/status", "test-pvb:cache:cluster/options",
    }


def test_key_count_stays_bounded(store: StateStore) -> None:
    exercise(store, cycles=3, now=NOW)
    before = store.key_count()
    exercise(store, cycles=40, now=NOW)
    assert store.key_count() == before


def test_prefixes_are_isolated_even_with_glob_characters(redis_url: str) -> None:
    a = StateStore.from_url(redis_url, prefix="a*[x]:")
    b = StateStore.from_url(redis_url, prefix="a")
    try:
        exercise(a)
        assert b.key_count() == a.key_count()  # "a" is a plain prefix of "a*[x]:"
        assert b.lock.acquire(30) is not None  # but its lock is another key
        assert key_count(a.client, "a*[x]:") == a.key_count()
        assert a.key_count() < b.key_count()
        assert b.ema.readings() == {}
    finally:
        a.close()
        b.close()


def test_works_with_a_bytes_client(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)  # decode_responses=False
    store = StateStore(client, prefix="bytes:")
    try:
        exercise(store, now=NOW)
        assert store.ema.readings()["pve0"] == CpuReading(0.5, 1)
        assert store.marks.blocked(now=NOW)
        assert store.history.last_decision() == {"id": 0}
        assert store.cache.get("ha/status") == {"cycle": 0}
        token = store.lock.acquire(60)
        assert token is not None and store.lock.owns(token)
        assert store.lock.attach(token, vmid=5)
        info = store.lock.holder()
        assert info is not None and info.vmid == 5
        hb = store.heartbeat.info()
        assert hb is not None and hb.at is not None
        assert store.keys_without_ttl() == []
    finally:
        client.close()


def test_recovers_after_a_redis_restart(store: StateStore, redis_server: RedisServer) -> None:
    exercise(store)
    redis_server.restart()
    with contextlib.suppress(redis.exceptions.RedisError):  # the first call may fail ...
        store.ping()
    # ... the next ones work, including Lua scripts the restarted server has never seen
    assert store.ping() is True
    out = store.ema.update({"pve1": 0.5}, 1.0, 0.5, {"pve1"})
    assert out == {"pve1": CpuReading(0.5, 1)}
    assert store.lock.acquire(30) is not None
    assert store.marks.blocked() == {}


def test_errors_propagate_while_redis_is_down(store: StateStore,
                                              redis_server: RedisServer) -> None:
    store.ping()
    redis_server.stop()
    try:
        with pytest.raises(redis.exceptions.RedisError):
            store.lock.acquire(30)
        with pytest.raises(redis.exceptions.RedisError):
            store.marks.blocked()
    finally:
        redis_server.start()
    assert store.lock.acquire(30) is not None
