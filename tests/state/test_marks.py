from __future__ import annotations

from typing import Any

import pytest
import redis

from balancer.state import MarkEntry, StateStore
from balancer.state.marks import clock_time
from tests.support.redis_server import wait_until

NOW = 1_700_000_000.0


def commands_sent(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The commands the store sends from now on, one per round trip, in order."""
    calls: list[Any] = []
    original = store.client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", counting)
    return calls


def test_cooldown_blocks_until_it_ends(store: StateStore) -> None:
    store.marks.set_cooldown(101, 600, "migrated", now=NOW)
    assert store.marks.blocked(now=NOW + 1) == {
        101: f"cooldown until {clock_time(NOW + 600)} (migrated)"}
    assert store.marks.blocked(now=NOW + 600) == {}


def test_cooldown_without_reason_and_zero_cooldown(store: StateStore) -> None:
    store.marks.set_cooldown(5, 60, now=NOW)
    assert store.marks.blocked(now=NOW) == {5: f"cooldown until {clock_time(NOW + 60)}"}
    store.marks.set_cooldown(5, 0, now=NOW)
    assert store.marks.blocked(now=NOW) == {}


def test_backoff_grows_and_is_capped(store: StateStore) -> None:
    got = [store.marks.record_failure(7, "boom", 60, 3600, now=NOW + i) for i in range(9)]
    assert got == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert store.marks.failures(7, now=NOW + 9) == 9


def test_backoff_reason_and_expiry(store: StateStore) -> None:
    store.marks.record_failure(7, "first", now=NOW)
    assert store.marks.blocked(now=NOW + 1) == {7: "backoff 60s after 1 failure: first"}
    assert store.marks.record_failure(7, "timeout", now=NOW + 100) == 120
    assert store.marks.blocked(now=NOW + 101) == {7: "backoff 120s after 2 failures: timeout"}
    assert store.marks.blocked(now=NOW + 220) == {}  # backoff over ...
    assert store.marks.failures(7, now=NOW + 220) == 2  # ... the count is remembered
    assert store.marks.record_failure(7, "again", now=NOW + 300) == 240


def test_failure_count_is_forgotten_after_a_day(store: StateStore) -> None:
    store.marks.record_failure(7, "x", now=NOW)
    store.marks.record_failure(7, "x", now=NOW + 1)
    assert store.marks.record_failure(7, "x", now=NOW + 1 + 86400) == 60


def test_success_resets_the_backoff(store: StateStore) -> None:
    store.marks.record_failure(7, "x", now=NOW)
    store.marks.record_failure(7, "x", now=NOW + 1)
    store.marks.record_success(7)
    assert store.marks.blocked(now=NOW + 2) == {}
    assert store.marks.failures(7, now=NOW + 2) == 0
    assert store.marks.record_failure(7, "x", now=NOW + 3) == 60


def test_unmigratable_and_its_expiry(store: StateStore) -> None:
    store.marks.mark_unmigratable(9, "local disk on local-lvm", ttl=3600, now=NOW)
    assert store.marks.blocked(now=NOW + 3599) == {9: "unmigratable: local disk on local-lvm"}
    assert store.marks.blocked(now=NOW + 3600) == {}


def test_several_marks_are_joined_and_listed(store: StateStore) -> None:
    store.marks.set_cooldown(3, 600, "moved", now=NOW)
    store.marks.record_failure(3, "err", now=NOW)
    store.marks.mark_unmigratable(2, "pci passthrough", now=NOW)
    blocked = store.marks.blocked(now=NOW + 1)
    assert blocked[3] == (f"cooldown until {clock_time(NOW + 600)} (moved); "
                          "backoff 60s after 1 failure: err")
    assert blocked[2] == "unmigratable: pci passthrough"
    listing = store.marks.listing(now=NOW + 1)
    assert [(m.kind, m.vmid, m.until) for m in listing] == [
        ("unmigratable", 2, NOW + 3600), ("cooldown", 3, NOW + 600), ("backoff", 3, NOW + 60)]
    assert listing[2] == MarkEntry(kind="backoff", vmid=3, until=NOW + 60, reason="err",
                                   since=NOW, failures=1, backoff=60.0)


def test_clear(store: StateStore) -> None:
    store.marks.set_cooldown(3, 600, now=NOW)
    store.marks.mark_unmigratable(3, "x", now=NOW)
    assert store.marks.clear(3, "cooldown") == 1
    assert list(store.marks.blocked(now=NOW)) == [3]
    assert store.marks.clear(3) == 1
    assert store.marks.blocked(now=NOW) == {}
    with pytest.raises(ValueError):
        store.marks.clear(3, "nope")


def test_expired_entries_are_pruned_and_the_key_has_a_ttl(store: StateStore,
                                                          raw: redis.Redis) -> None:
    key = store.marks.marks_key
    store.marks.set_cooldown(1, 60, now=NOW)
    store.marks.record_failure(2, "x", now=NOW)  # remembered a day
    assert 0 < raw.pttl(key) <= 86_400_000
    assert raw.pttl(key) > 3_600_000  # pushed out to the furthest entry, not the last one
    store.marks.set_cooldown(3, 10, now=NOW)
    assert raw.pttl(key) > 3_600_000  # never shortened
    assert raw.hlen(key) == 3
    store.marks.blocked(now=NOW + 61)
    assert raw.hlen(key) == 1  # cooldowns gone; the failure count stays
    store.marks.blocked(now=NOW + 86_401)
    assert not raw.exists(key)


def test_marks_expire_in_real_time(store: StateStore, raw: redis.Redis) -> None:
    store.marks.mark_unmigratable(4, "x", ttl=0.2)
    assert 4 in store.marks.blocked()
    wait_until(lambda: not raw.exists(store.marks.marks_key), timeout=5, what="marks expiry")
    assert store.marks.blocked() == {}


def test_unreadable_entries_are_dropped(store: StateStore, raw: redis.Redis) -> None:
    raw.hset(store.marks.marks_key, "cooldown:1", "not json")
    raw.pexpire(store.marks.marks_key, 60_000)
    store.marks.set_cooldown(2, 60, now=NOW)
    assert list(store.marks.blocked(now=NOW)) == [2]
    assert raw.hlen(store.marks.marks_key) == 1


def test_blocked_is_one_round_trip(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for vmid in range(100, 150):
        store.marks.set_cooldown(vmid, 600, "moved", now=NOW)
    store.marks.blocked(now=NOW)  # script loaded
    calls = commands_sent(store, monkeypatch)
    assert len(store.marks.blocked(now=NOW)) == 50
    assert calls == ["EVALSHA"]


def test_vmid_is_validated(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.marks.set_cooldown(0, 60)
    with pytest.raises(ValueError):
        store.marks.record_failure(True, "x")


# --- departures: the nodes a VM left recently (ranked last as its targets) ---------------


def test_departures_gather_the_nodes_left_inside_the_window(store: StateStore) -> None:
    marks = store.marks
    marks.record_departure(304, "pve3", 3600, now=NOW)
    marks.record_departure(304, "pve1", 3600, now=NOW + 900)
    marks.record_departure(305, "pve2", 3600, now=NOW + 900)
    assert marks.current(now=NOW + 901).left == {
        304: {"pve3": NOW, "pve1": NOW + 900}, 305: {"pve2": NOW + 900}}
    # The newest departure keeps the entry; the one older than the window drops out of it.
    marks.record_departure(304, "pve5", 3600, now=NOW + 3700)
    assert marks.current(now=NOW + 3701).left[304] == {"pve1": NOW + 900, "pve5": NOW + 3700}
    assert 304 not in marks.current(now=NOW + 3700 + 3601).left  # the whole entry expired


def test_departures_block_nothing_and_cooldowns_are_still_read(store: StateStore) -> None:
    store.marks.set_cooldown(304, 600, "moved pve3->pve1", now=NOW)
    store.marks.record_departure(304, "pve3", 3600, now=NOW)
    now = store.marks.current(now=NOW + 1)
    assert now.blocked == {304: f"cooldown until {clock_time(NOW + 600)} (moved pve3->pve1)"}
    assert now.left == {304: {"pve3": NOW}}
    assert [m.kind for m in store.marks.listing(now=NOW + 1)] == ["cooldown"]
    assert store.marks.current(now=NOW + 601).blocked == {}  # the cooldown ends, the memory not
    assert store.marks.current(now=NOW + 601).left == {304: {"pve3": NOW}}


def test_a_window_of_zero_records_nothing(store: StateStore, raw: redis.Redis) -> None:
    store.marks.record_departure(304, "pve3", 0, now=NOW)
    assert not raw.exists(store.marks.marks_key)


def test_a_departure_pushes_the_key_ttl_out_to_its_window(store: StateStore,
                                                          raw: redis.Redis) -> None:
    store.marks.set_cooldown(1, 60, now=NOW)
    store.marks.record_departure(1, "pve3", 3600, now=NOW)
    assert raw.pttl(store.marks.marks_key) > 3_000_000


def test_current_is_one_round_trip(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.marks.set_cooldown(1, 600, now=NOW)
    store.marks.record_departure(1, "pve3", 3600, now=NOW)
    store.marks.current(now=NOW)
    calls = commands_sent(store, monkeypatch)
    found = store.marks.current(now=NOW)
    assert (list(found.blocked), found.left) == ([1], {1: {"pve3": NOW}})
    assert calls == ["EVALSHA"]


def test_an_unreadable_departure_is_passed_over(store: StateStore, raw: redis.Redis) -> None:
    """A preference never fails a cycle: a departure entry it cannot read is skipped."""
    raw.hset(store.marks.marks_key, "left:7", '{"kind": "left", "vmid": "x", "nodes": {},'
             f' "expires": {NOW + 600}}}')
    raw.hset(store.marks.marks_key, "left:8", '{"kind": "left", "vmid": 8, "nodes": '
             f'{{"pve1": "soon", "pve2": {NOW}}}, "expires": {NOW + 600}}}')
    store.marks.set_cooldown(9, 60, now=NOW)
    found = store.marks.current(now=NOW)
    assert found.left == {8: {"pve2": NOW}} and list(found.blocked) == [9]
