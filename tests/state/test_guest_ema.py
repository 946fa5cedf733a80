"""The per-guest CPU average (issue 15), on a real redis-server."""

from __future__ import annotations

import pytest
import redis

from balancer.state import StateStore


def test_first_sample_seeds_then_the_average_follows(store: StateStore) -> None:
    ema = store.guest_ema
    assert ema.update({100: 0.8, 101: 0.2}, sampled_at=10, alpha=0.5, reset_after=60,
                      ttl_seconds=600) == {100: 0.8, 101: 0.2}
    after = ema.update({100: 0.2, 101: 0.2}, sampled_at=15, alpha=0.5, reset_after=60,
                       ttl_seconds=600)
    assert after[100] == pytest.approx(0.5), "one noise peak is halved, not believed"
    assert ema.values() == after


def test_a_sample_not_newer_is_ignored_and_gone_guests_drop_out(store: StateStore) -> None:
    ema = store.guest_ema
    ema.update({100: 0.8, 101: 0.2}, sampled_at=10, alpha=0.5, reset_after=60, ttl_seconds=600)
    assert ema.update({100: 0.0}, sampled_at=10, alpha=0.5, reset_after=60,
                      ttl_seconds=600) == {100: 0.8, 101: 0.2}, "same snapshot twice"
    assert ema.update({100: 0.0}, sampled_at=20, alpha=0.5, reset_after=60,
                      ttl_seconds=600) == {100: pytest.approx(0.4)}


def test_after_a_long_gap_the_average_starts_over(store: StateStore) -> None:
    ema = store.guest_ema
    ema.update({100: 0.8}, sampled_at=10, alpha=0.5, reset_after=60, ttl_seconds=600)
    assert ema.update({100: 0.1}, sampled_at=100, alpha=0.5, reset_after=60,
                      ttl_seconds=600) == {100: 0.1}


def test_the_command_count_does_not_grow_with_guests(store: StateStore,
                                                     raw: redis.Redis) -> None:
    def commands(guests: int, at: float) -> int:
        samples = {vmid: (vmid % 7) / 10 for vmid in range(100, 100 + guests)}
        before = int(raw.info("stats")["total_commands_processed"])
        found = store.guest_ema.update(samples, sampled_at=at, alpha=0.5, reset_after=60,
                                       ttl_seconds=600)
        assert len(found) == guests and found[106] == pytest.approx(0.1)
        return int(raw.info("stats")["total_commands_processed"]) - before

    commands(10, at=1)  # loads the script
    assert commands(10_000, at=2) == commands(10, at=3) <= 4  # EVALSHA, GET, SET, INFO
    assert 0 < raw.pttl(store.guest_ema.doc_key) <= 600_000


def test_no_running_guest_leaves_an_empty_document(store: StateStore) -> None:
    assert store.guest_ema.update({}, sampled_at=1, alpha=0.5, reset_after=60,
                                  ttl_seconds=600) == {}
    assert store.guest_ema.values() == {}


def test_samples_that_are_no_cpu_share_are_refused(store: StateStore) -> None:
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and not negative"):
            store.guest_ema.update({100: 0.5, 101: bad}, sampled_at=1, alpha=0.5,
                                   reset_after=60, ttl_seconds=600)
    assert store.guest_ema.values() == {}, "nothing was written"


def test_the_averages_read_by_vmid_and_a_corrupt_value_reads_as_missing(
        store: StateStore, raw: redis.Redis) -> None:
    found = store.guest_ema.update({100: 0.5, 101: 0.25}, sampled_at=1, alpha=0.5,
                                   reset_after=60, ttl_seconds=600)
    assert found[100] == 0.5 and found.get(102) is None and sorted(found) == [100, 101]
    raw.set(store.guest_ema.doc_key, '{"ts": 1, "v": {"100": "x", "101": 0.25}}')
    values = store.guest_ema.values()
    assert values.get(100) is None and values.get(101) == 0.25
    raw.set(store.guest_ema.doc_key, "not json")
    assert store.guest_ema.values() == {}
