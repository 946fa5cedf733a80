from __future__ import annotations

import redis

from balancer.migrations import EventKind, MigrationEvent
from balancer.state import History, StateStore


def test_history_is_capped_newest_first(store: StateStore, raw: redis.Redis) -> None:
    history = History(store.client, store.prefix, max_entries=5)
    for i in range(12):
        history.record_decision({"id": i, "moves": []})
    assert raw.llen(history.decisions_key) == 5
    assert [d["id"] for d in history.decisions(100)] == [11, 10, 9, 8, 7]
    assert [d["id"] for d in history.decisions(2)] == [11, 10]
    assert history.decisions(0) == []
    assert history.last_decision() == {"id": 11, "moves": []}


def test_default_cap_is_200(store: StateStore, raw: redis.Redis) -> None:
    for i in range(230):
        store.history.record_migration_event(
            MigrationEvent(EventKind.STARTED, vmid=i, at=float(i), upid=f"U{i}"))
    assert raw.llen(store.history.migrations_key) == 200
    assert store.history.events(1) == [
        MigrationEvent(EventKind.STARTED, vmid=229, at=229.0, upid="U229")]


def test_decisions_and_migrations_are_separate(store: StateStore) -> None:
    assert store.history.last_decision() is None
    store.history.record_decision({"id": "d1"})
    store.history.record_migration_event(MigrationEvent(
        EventKind.SUCCEEDED, upid="U", vmid=100, at=5.0, source="a", target="b", duration=12.5,
        outcome="OK"))
    assert store.history.decisions() == [{"id": "d1"}]
    assert store.history.migrations()[0].duration == 12.5


def test_an_entry_that_is_no_event_is_skipped_not_fatal(store: StateStore,
                                                        raw: redis.Redis) -> None:
    """The history is shared state: an older or foreign entry must not hide the others."""
    store.history.record_migration_event(MigrationEvent(EventKind.REQUESTED, vmid=7, at=1.0,
                                                        decision_id="d"))
    raw.lpush(store.history.migrations_key, '{"event": "teleported", "vmid": 7}', "not json",
              '{"event": "failed"}')
    assert [e.kind for e in store.history.events()] == [EventKind.REQUESTED]


def test_history_keys_have_a_ttl(store: StateStore, raw: redis.Redis) -> None:
    store.history.record_decision({"id": 1})
    store.history.record_migration_event(MigrationEvent(EventKind.REQUESTED, vmid=1, at=0.0))
    for key in (store.history.decisions_key, store.history.migrations_key):
        assert raw.ttl(key) > 86_400


def test_values_that_are_not_json_become_strings(store: StateStore) -> None:
    store.history.record_decision({"at": {1, 2} and frozenset({1}), "ok": True})
    assert store.history.last_decision() == {"at": "frozenset({1})", "ok": True}
