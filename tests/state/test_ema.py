from __future__ import annotations

import math
import threading

import pytest
import redis

from balancer.engine.types import CpuReading
from balancer.state import EMA_MAX, StateStore

ONLINE = {"pve1", "pve2", "pve3"}


def test_first_sample_seeds(store: StateStore) -> None:
    out = store.ema.update({"pve1": 0.5, "pve2": 0.25}, 100.0, 0.2, ONLINE)
    assert out == {"pve1": CpuReading(0.5, 1), "pve2": CpuReading(0.25, 1)}
    assert store.ema.readings() == out
    entries = store.ema.entries()
    assert entries["pve1"].last_ts == 100.0


def test_alpha_math_matches_a_hand_computation(store: StateStore) -> None:
    alpha = 0.25
    store.ema.update({"pve1": 0.5}, 1.0, alpha, ONLINE)
    store.ema.update({"pve1": 0.8}, 2.0, alpha, ONLINE)
    out = store.ema.update({"pve1": 0.2}, 3.0, alpha, ONLINE)
    # 0.5 -> 0.25*0.8 + 0.75*0.5 = 0.575 -> 0.25*0.2 + 0.75*0.575 = 0.48125
    assert out["pve1"].samples == 3
    assert out["pve1"].value == pytest.approx(0.48125, abs=1e-15)


def test_full_precision_survives_lua(store: StateStore) -> None:
    alpha = 2.0 / 13.0
    value = 1.0 / 3.0
    store.ema.update({"pve1": value}, 1_700_000_000.123456, alpha, ONLINE)
    out = store.ema.update({"pve1": 0.7}, 1_700_000_000.123457, alpha, ONLINE)
    assert out["pve1"].value == alpha * 0.7 + (1 - alpha) * value
    assert store.ema.entries()["pve1"].last_ts == 1_700_000_000.123457


def test_duplicate_and_stale_samples_are_not_applied(store: StateStore) -> None:
    store.ema.update({"pve1": 0.5}, 10.0, 0.5, ONLINE)
    store.ema.update({"pve1": 0.9}, 10.0, 0.5, ONLINE)  # duplicate timestamp
    out = store.ema.update({"pve1": 0.9}, 9.0, 0.5, ONLINE)  # older
    assert out["pve1"] == CpuReading(0.5, 1)
    out = store.ema.update({"pve1": 0.9}, 11.0, 0.5, ONLINE)
    assert out["pve1"] == CpuReading(0.7, 2)


def test_concurrent_updates_with_the_same_timestamp_apply_once(store: StateStore) -> None:
    alpha = 0.2
    store.ema.update({"pve1": 0.4, "pve2": 0.1}, 1.0, alpha, ONLINE)
    n = 12
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            barrier.wait()
            store.ema.update({"pve1": 0.9, "pve2": 0.6}, 2.0, alpha, ONLINE)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    out = store.ema.readings()
    assert out["pve1"].samples == 2 and out["pve2"].samples == 2
    assert out["pve1"].value == pytest.approx(alpha * 0.9 + (1 - alpha) * 0.4)
    assert out["pve2"].value == pytest.approx(alpha * 0.6 + (1 - alpha) * 0.1)


def test_offline_nodes_are_reset_and_reseeded(store: StateStore) -> None:
    store.ema.update({"pve1": 0.5, "pve2": 0.5}, 1.0, 0.5, ONLINE)
    store.ema.update({"pve1": 0.7, "pve2": 0.7}, 2.0, 0.5, ONLINE)
    out = store.ema.update({"pve1": 0.1, "pve2": 0.9}, 3.0, 0.5, {"pve1"})
    assert set(out) == {"pve1"}  # pve2 went offline: forgotten, its sample ignored
    out = store.ema.update({"pve1": 0.1, "pve2": 0.9}, 4.0, 0.5, ONLINE)
    assert out["pve2"] == CpuReading(0.9, 1)
    assert out["pve1"].samples == 4


def test_online_node_without_a_sample_keeps_its_ema(store: StateStore) -> None:
    store.ema.update({"pve1": 0.5, "pve2": 0.3}, 1.0, 0.5, ONLINE)
    out = store.ema.update({"pve1": 0.7}, 2.0, 0.5, ONLINE)
    assert out["pve2"] == CpuReading(0.3, 1)


def test_all_nodes_offline_removes_the_key(store: StateStore, raw: redis.Redis) -> None:
    store.ema.update({"pve1": 0.5}, 1.0, 0.5, ONLINE)
    assert store.ema.update({}, 2.0, 0.5, ()) == {}
    assert not raw.exists(store.ema.ema_key)


def test_shift(store: StateStore) -> None:
    store.ema.update({"pve1": 0.6, "pve2": 0.2}, 10.0, 0.5, ONLINE)
    assert store.ema.shift("pve1", -0.25) == CpuReading(0.35, 1)
    assert store.ema.shift("pve2", 0.25) == CpuReading(0.45, 1)
    assert store.ema.shift("pve3", 0.25) is None  # no EMA: nothing to correct
    assert store.ema.shift("pve1", -5.0) == CpuReading(0.0, 1)
    assert store.ema.shift("pve2", 5.0) == CpuReading(EMA_MAX, 1)
    assert store.ema.entries()["pve2"].last_ts == 10.0


def test_shift_with_sampled_at_drops_older_samples(store: StateStore) -> None:
    store.ema.update({"pve1": 0.6}, 10.0, 0.5, ONLINE)
    store.ema.shift("pve1", -0.2, sampled_at=20.0)
    out = store.ema.update({"pve1": 1.0}, 15.0, 0.5, ONLINE)  # taken before the move
    assert out["pve1"].value == pytest.approx(0.4) and out["pve1"].samples == 1
    out = store.ema.update({"pve1": 1.0}, 21.0, 0.5, ONLINE)
    assert out["pve1"].value == pytest.approx(0.7) and out["pve1"].samples == 2
    store.ema.shift("pve1", 0.0, sampled_at=5.0)  # never moves last_ts backwards
    assert store.ema.entries()["pve1"].last_ts == 21.0


def test_a_shift_that_leaves_the_source_under_cpu_max_marks_it_relieved(
        store: StateStore) -> None:
    store.ema.update({"pve1": 0.9, "pve2": 0.95}, 10.0, 1.0, ONLINE)
    assert store.ema.shift("pve1", -0.15, relieved_below=0.8) == CpuReading(
        pytest.approx(0.75), 1, relieved=True)
    # Still above cpu_max after the move: more relief is needed, so no hysteresis.
    assert store.ema.shift("pve2", -0.1, relieved_below=0.8) == CpuReading(
        pytest.approx(0.85), 1, relieved=False)
    # A target's shift keeps what it had.
    assert store.ema.shift("pve1", 0.01) == CpuReading(pytest.approx(0.76), 1, relieved=True)
    assert store.ema.entries()["pve1"].relieved


def test_the_update_clears_relieved_once_the_ema_leaves_the_band(store: StateStore) -> None:
    band = (0.79, 0.81)
    store.ema.update({"pve1": 0.85, "pve2": 0.85}, 1.0, 1.0, ONLINE, band=band)
    store.ema.shift("pve1", -0.05, relieved_below=0.8)
    store.ema.shift("pve2", -0.05, relieved_below=0.8)
    out = store.ema.update({"pve1": 0.805, "pve2": 0.805}, 2.0, 1.0, ONLINE, band=band)
    assert out["pve1"].relieved and out["pve2"].relieved  # noise inside the band
    out = store.ema.update({"pve1": 0.82, "pve2": 0.78}, 3.0, 1.0, ONLINE, band=band)
    assert not out["pve1"].relieved  # above the band: it fires again
    assert not out["pve2"].relieved  # clearly under: an ordinary node again
    out = store.ema.update({"pve1": 0.805, "pve2": 0.805}, 4.0, 1.0, ONLINE, band=band)
    assert not out["pve1"].relieved and not out["pve2"].relieved  # only a move sets it


def test_an_update_without_a_band_keeps_relieved(store: StateStore) -> None:
    store.ema.update({"pve1": 0.85}, 1.0, 1.0, ONLINE)
    store.ema.shift("pve1", -0.1, relieved_below=0.8)
    assert store.ema.update({"pve1": 0.2}, 2.0, 1.0, ONLINE)["pve1"].relieved


def test_a_document_written_before_the_hysteresis_reads_as_not_relieved(
        store: StateStore, raw: redis.Redis) -> None:
    raw.set(store.ema.ema_key, '{"pve1":{"ema":0.5,"samples":3,"last_ts":1}}')
    assert store.ema.readings() == {"pve1": CpuReading(0.5, 3)}
    out = store.ema.update({"pve1": 0.5}, 2.0, 0.5, ONLINE, band=(0.79, 0.81))
    assert out["pve1"] == CpuReading(0.5, 4)


def test_ttl_is_set_and_refreshed(store: StateStore, raw: redis.Redis) -> None:
    store.ema.update({"pve1": 0.5}, 1.0, 0.5, ONLINE, ttl_seconds=30)
    assert 0 < raw.pttl(store.ema.ema_key) <= 30_000
    store.ema.update({"pve1": 0.5}, 2.0, 0.5, ONLINE, ttl_seconds=600)
    assert 30_000 < raw.pttl(store.ema.ema_key) <= 600_000


def test_clear(store: StateStore) -> None:
    store.ema.update({"pve1": 0.5}, 1.0, 0.5, ONLINE)
    store.ema.clear()
    assert store.ema.readings() == {}


def test_samples_are_clamped_and_bad_input_rejected(store: StateStore) -> None:
    out = store.ema.update({"pve1": 3.0, "pve2": -1.0}, 1.0, 0.5, ONLINE)
    assert out["pve1"].value == EMA_MAX and out["pve2"].value == 0.0
    with pytest.raises(ValueError):
        store.ema.update({"pve1": math.nan}, 2.0, 0.5, ONLINE)
    with pytest.raises(ValueError):
        store.ema.update({"pve1": 0.5}, 2.0, 0.0, ONLINE)
    with pytest.raises(ValueError):
        store.ema.update({"pve1": 0.5}, math.inf, 0.5, ONLINE)
    with pytest.raises(ValueError):
        store.ema.shift("pve1", math.nan)
    assert store.ema.readings()["pve1"].samples == 1
