"""The notification outbox and the drained-node set (issue 17), on a real redis-server."""

from __future__ import annotations

import redis

from balancer.notify import Notice, NoticeKind, migration_failed, paused
from balancer.state import StateStore


def test_the_same_notice_is_queued_once_per_throttle(store: StateStore) -> None:
    failed = migration_failed(101, "pve1", "pve2", "migration aborted")
    assert store.outbox.post([failed, failed], throttle=3600) == [True, False]
    other = migration_failed(102, "pve1", "pve2", "migration aborted")
    unthrottled = paused("paused by alice until resumed")
    assert store.outbox.post([other, unthrottled, unthrottled], 3600) == [True, True, True]
    taken = store.outbox.take(10)
    assert [(n.kind, n.subject) for n in taken] == [
        (NoticeKind.MIGRATION_FAILED, "101"), (NoticeKind.MIGRATION_FAILED, "102"),
        (NoticeKind.PAUSED, "cluster"), (NoticeKind.PAUSED, "cluster")]
    assert store.outbox.take(10) == [], "each notice is taken once"


def test_a_requeued_notice_keeps_its_attempts_and_the_outbox_is_capped(
        store: StateStore, raw: redis.Redis) -> None:
    notice = Notice(NoticeKind.DRAIN_STUCK, "pve3", "t", "b", attempts=2)
    store.outbox.requeue(notice)
    assert store.outbox.take(1) == [notice]
    for i in range(250):
        store.outbox.post([Notice(NoticeKind.NODE_STUCK, f"n{i}", "t", "b")], 0)
    assert store.outbox.pending() == 200, "the newest 200 are kept"
    assert store.outbox.take(1)[0].subject == "n50"
    assert raw.pttl(store.outbox.outbox_key) > 0


def test_a_drain_keeps_its_start_and_outlives_workers_but_not_forever(
        store: StateStore, raw: redis.Redis) -> None:
    first = store.drains.set("pve3", "alice@admin1", "psu", now=1000.0)
    again = store.drains.set("pve3", "bob@admin2", "psu and fans", now=2000.0)
    assert (again.since, again.by, again.reason) == (1000.0, "bob@admin2", "psu and fans")
    assert first.describe() == "by alice@admin1: psu"
    assert set(store.drains.all()) == {"pve3"}
    assert 89 * 86_400_000 < raw.pttl(store.drains.drains_key) <= 90 * 86_400_000
    raw.hset(store.drains.drains_key, "pve4", "{not json")
    assert store.drains.all()["pve4"].reason == "unreadable drain entry", "still drained"
    assert store.drains.clear("pve3") is True and store.drains.clear("pve3") is False


def test_one_sender_at_a_time(store: StateStore, raw: redis.Redis) -> None:
    with store.outbox.sending(60) as first, store.outbox.sending(60) as second:
        assert (first, second) == (True, False)
    assert raw.exists(store.outbox.send_lock_key) == 0, "released by its owner"
    raw.set(store.outbox.send_lock_key, "someone-else", px=60_000)
    with store.outbox.sending(60) as third:
        assert third is False
    assert raw.get(store.outbox.send_lock_key) == "someone-else", "never another's lock"
