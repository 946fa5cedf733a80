"""The cluster-wide pause (issue 17), on a real redis-server."""

from __future__ import annotations

import pytest
import redis

from balancer.state import StateStore


def test_a_pause_for_a_while_ends_by_itself(store: StateStore, raw: redis.Redis) -> None:
    state = store.pause.set("alice@admin1", "backup window", seconds=600, now=1000.0)
    assert store.pause.current(now=1599.0) == state
    assert store.pause.current(now=1600.0) is None, "ended at `until`, whatever the TTL says"
    assert 0 < raw.pttl(store.pause.pause_key) <= 600_000
    assert state.describe() == ("paused by alice@admin1 until 1970-01-01 00:26:40 UTC: "
                                "backup window")


def test_a_pause_until_resumed_and_resume(store: StateStore, raw: redis.Redis) -> None:
    store.pause.set("bob@admin2")
    paused = store.pause.current()
    assert paused is not None and paused.until is None
    assert paused.describe() == "paused by bob@admin2 until resumed"
    assert raw.pttl(store.pause.pause_key) > 29 * 86_400_000, "bounded: nobody stays paused"
    assert store.pause.clear() is True and store.pause.current() is None
    assert store.pause.clear() is False


def test_an_unreadable_pause_still_holds_moves_back(store: StateStore, raw: redis.Redis) -> None:
    raw.set(store.pause.pause_key, "{not json")
    paused = store.pause.current()
    assert paused is not None and "unreadable" in paused.describe()


@pytest.mark.parametrize("seconds", [0, -5, 31 * 86400])
def test_a_pause_length_out_of_range_is_refused(store: StateStore, seconds: float) -> None:
    with pytest.raises(ValueError, match="a pause lasts"):
        store.pause.set("x", seconds=seconds)
