from __future__ import annotations

import math
import threading

import pytest
import redis

from balancer.state import MetricsStore, StateStore
from balancer.state.keys import text
from balancer.state.metrics import HISTOGRAM_BUCKETS, buckets_for, encode_labels, label_key

EVAL = "evaluate_duration_seconds"
MIGRATION = "migration_duration_seconds"


def test_store_exposes_metrics_part(store: StateStore) -> None:
    assert isinstance(store.metrics, MetricsStore)
    assert store.metrics.prefix == store.prefix


def test_counts_round_trip(store: StateStore) -> None:
    m = store.metrics
    assert m.count("decisions", {"action": "migrate", "trigger": "cpu"}) == 1.0
    m.count("decisions", {"trigger": "cpu", "action": "migrate"})  # label order is irrelevant
    m.count("decisions", {"action": "none", "trigger": "none"})
    m.count("skipped_cycles", {"reason": "no_quorum"}, amount=2.5)
    m.count("plain")
    snap = m.snapshot()
    assert snap.counters["decisions"] == {
        (("action", "migrate"), ("trigger", "cpu")): 2.0,
        (("action", "none"), ("trigger", "none")): 1.0,
    }
    assert snap.counter("skipped_cycles", {"reason": "no_quorum"}) == 2.5
    assert snap.counter("plain") == 1.0
    assert snap.counter("plain", {"never": "counted"}) == 0.0
    assert snap.counter("never_counted") == 0.0
    assert snap.histograms == {}


def test_counts_are_shared_between_clients(store: StateStore, redis_url: str) -> None:
    """Prefork workers on many hosts: each has its own connection, all add to one total."""
    others = [StateStore.from_url(redis_url, prefix=store.prefix) for _ in range(4)]
    try:
        def work(s: StateStore) -> None:
            for _ in range(50):
                s.metrics.count("migrations", {"result": "succeeded"})

        threads = [threading.Thread(target=work, args=(s,)) for s in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in others:
            s.close()
    assert store.metrics.snapshot().counter("migrations", {"result": "succeeded"}) == 200.0


def test_observe_buckets_are_cumulative(store: StateStore) -> None:
    m = store.metrics
    for value in (0.005, 0.01, 0.3, 0.3, 7.0, 45.0):
        m.observe(EVAL, value)
    hist = m.snapshot().histogram(EVAL)
    assert hist is not None
    bounds = [le for le, _ in hist.buckets]
    assert bounds == [*HISTOGRAM_BUCKETS[EVAL], math.inf]
    assert bounds[0] == 0.01 and bounds[-2] == 30.0
    counts = dict(hist.buckets)
    assert counts[0.01] == 2  # <= is inclusive: 0.01 lands in le=0.01
    assert counts[0.25] == 2
    assert counts[0.5] == 4
    assert counts[5.0] == 4
    assert counts[10.0] == 5
    assert counts[30.0] == 5
    assert counts[math.inf] == 6
    cumulative = [c for _, c in hist.buckets]
    assert cumulative == sorted(cumulative)
    assert hist.count == 6
    assert hist.sum == pytest.approx(0.005 + 0.01 + 0.3 + 0.3 + 7.0 + 45.0)


def test_histogram_buckets_per_name_and_labels(store: StateStore) -> None:
    m = store.metrics
    assert buckets_for(MIGRATION)[0] == 5.0 and buckets_for(MIGRATION)[-1] == 1800.0
    m.observe(MIGRATION, 42.0)
    m.observe(MIGRATION, 4000.0)
    m.observe(MIGRATION, 3.0, {"node": "pve1"})
    snap = m.snapshot()
    plain = snap.histogram(MIGRATION)
    labelled = snap.histogram(MIGRATION, {"node": "pve1"})
    assert plain is not None and labelled is not None
    assert dict(plain.buckets)[30.0] == 0 and dict(plain.buckets)[60.0] == 1
    assert dict(plain.buckets)[1800.0] == 1 and dict(plain.buckets)[math.inf] == 2
    assert plain.count == 2 and plain.sum == 4042.0
    assert dict(labelled.buckets)[5.0] == 1 and labelled.count == 1
    # Unknown histograms get default buckets rather than failing a best-effort caller.
    m.observe("other_seconds", 0.2)
    other = m.snapshot().histogram("other_seconds")
    assert other is not None and other.count == 1 and other.buckets[-1] == (math.inf, 1)


def test_snapshot_takes_two_round_trips(store: StateStore, redis_url: str) -> None:
    store.metrics.count("decisions", {"action": "none", "trigger": "none"})
    store.metrics.observe(EVAL, 0.2)
    store.metrics.count("migrations", {"result": "failed"})
    monitor_client = redis.Redis.from_url(redis_url)
    calls: list[str] = []
    with monitor_client.monitor() as mon:
        store.metrics.snapshot()
        store.client.ping()  # a marker: everything before it was the snapshot
        for command in mon.listen():
            cmd = str(command["command"])
            if cmd.upper().startswith("PING"):
                break
            if not cmd.upper().startswith(("CLIENT", "HELLO", "SELECT")):
                calls.append(cmd.split()[0].upper())
    monitor_client.close()
    # HGETALL of the index, then one pipeline with a HGETALL per metric.
    assert calls == ["HGETALL"] * 4


def test_every_metrics_key_has_a_ttl(store: StateStore, raw: redis.Redis) -> None:
    store.metrics.count("decisions", {"action": "migrate", "trigger": "memory"})
    store.metrics.observe(MIGRATION, 12.0)
    keys = sorted(text(k) for k in raw.keys("*"))
    assert keys == ["test-pvb:metrics:decisions", "test-pvb:metrics:index",
                    f"test-pvb:metrics:{MIGRATION}"]
    assert store.keys_without_ttl() == []
    for key in keys:
        assert raw.pttl(key) > 29 * 86400 * 1000, key


def test_ttl_is_refreshed_on_write(store: StateStore, raw: redis.Redis) -> None:
    m = MetricsStore(store.client, store.prefix, ttl_seconds=100)
    m.count("decisions", {"action": "none", "trigger": "none"})
    raw.pexpire("test-pvb:metrics:decisions", 5000)
    raw.pexpire("test-pvb:metrics:index", 5000)
    m.count("decisions", {"action": "none", "trigger": "none"})
    assert raw.pttl("test-pvb:metrics:decisions") > 90_000
    assert raw.pttl("test-pvb:metrics:index") > 90_000


def test_expired_metric_listed_in_index_reads_as_absent(store: StateStore,
                                                        raw: redis.Redis) -> None:
    store.metrics.count("decisions", {"action": "none", "trigger": "none"})
    store.metrics.count("migrations", {"result": "aborted"})
    raw.delete("test-pvb:metrics:decisions")
    snap = store.metrics.snapshot()
    assert "decisions" not in snap.counters
    assert snap.counter("migrations", {"result": "aborted"}) == 1.0


def test_storage_layout_uses_canonical_labels(store: StateStore, raw: redis.Redis) -> None:
    store.metrics.count("decisions", {"trigger": "cpu", "action": "migrate"})
    assert raw.hgetall("test-pvb:metrics:decisions") == {
        '{"action":"migrate","trigger":"cpu"}': "1"}
    store.metrics.observe(EVAL, 0.02)
    fields = raw.hgetall(f"test-pvb:metrics:{EVAL}")
    assert fields == {"bucket:0.025:{}": "1", "sum:{}": "0.02", "count:{}": "1"}
    assert raw.hgetall("test-pvb:metrics:index") == {"decisions": "counter", EVAL: "histogram"}
    assert encode_labels(label_key({"b": "2", "a": "1"})) == '{"a":"1","b":"2"}'


def test_snapshot_of_nothing_and_clear(store: StateStore) -> None:
    assert store.metrics.snapshot().counters == {}
    store.metrics.count("decisions", {"action": "none", "trigger": "none"})
    store.metrics.observe(EVAL, 1.0)
    store.metrics.clear()
    assert store.key_count() == 0
    snap = store.metrics.snapshot()
    assert snap.counters == {} and snap.histograms == {}


@pytest.mark.parametrize("bad", ["", "Decisions", "has-dash", "index", "1st"])
def test_bad_metric_names_are_rejected(store: StateStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.metrics.count(bad, {})


def test_bad_values_and_labels_are_rejected(store: StateStore) -> None:
    m = store.metrics
    with pytest.raises(ValueError):
        m.count("decisions", {"action": "x"}, amount=-1)
    with pytest.raises(ValueError):
        m.count("decisions", {"action": "x"}, amount=math.nan)
    with pytest.raises(ValueError):
        m.observe(EVAL, math.inf)
    with pytest.raises(ValueError):
        m.count("decisions", {"bad-label": "x"})
    with pytest.raises(ValueError):
        m.observe(EVAL, 1.0, {"le": "1"})
    with pytest.raises(ValueError):
        m.count(EVAL, {})  # a histogram name is not a counter
    assert store.key_count() == 0


def test_long_label_values_are_cut(store: StateStore) -> None:
    store.metrics.count("skipped_cycles", {"reason": "x" * 1000})
    (key,) = store.metrics.snapshot().counters["skipped_cycles"]
    assert key == (("reason", "x" * 200),)


def test_redis_errors_are_raised() -> None:
    dead = StateStore.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            dead.metrics.count("decisions", {"action": "none", "trigger": "none"})
        with pytest.raises(redis.exceptions.ConnectionError):
            dead.metrics.snapshot()
    finally:
        dead.close()
