"""Cluster-wide counters and histograms in Redis, so that every prefork worker on every host
adds to the same numbers and one small exporter process (`balancer.exporter`) serves them.

Layout (prefix `P`); every key gets `PX` = the metrics TTL (30 days) on every write, so an
abandoned prefix eventually disappears while a running balancer never loses a counter:

    P metrics:index        hash name -> "counter" | "histogram"  (what `snapshot` reads)
    P metrics:<name>       counter: hash <labels> -> float total (HINCRBYFLOAT)
                           histogram: hash  bucket:<le>:<labels> -> count in (prev le, le]
                                            sum:<labels>         -> float sum
                                            count:<labels>       -> observations

`<labels>` is the canonical label encoding: compact JSON of the labels sorted by name, e.g.
`{"action":"migrate","trigger":"cpu"}` (`{}` without labels). Histogram buckets are fixed
per metric name (`HISTOGRAM_BUCKETS`); each observation increments exactly one bucket (the
last is `+Inf`), its sum and its count in one MULTI, and `snapshot()` returns the cumulative
buckets Prometheus expects. Every write is one round trip, `snapshot()` two.

Errors are never swallowed here: Redis trouble raises `redis.exceptions.RedisError`; callers
that treat metrics as best effort catch it.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text, text_dict, to_ms

COUNTER = "counter"
HISTOGRAM = "histogram"

DEFAULT_TTL_SECONDS = 30 * 86400.0

#: Upper bounds (seconds) of the histogram buckets, per metric name; `+Inf` is implied.
HISTOGRAM_BUCKETS: dict[str, tuple[float, ...]] = {
    "evaluate_duration_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    "migration_duration_seconds": (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
                                   900.0, 1800.0),
}
#: Buckets of a histogram not listed above (Prometheus' client defaults).
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
                                      1.0, 2.5, 5.0, 7.5, 10.0)

#: Longest label value kept; longer ones are cut (labels must stay low-cardinality anyway).
MAX_LABEL_VALUE = 200

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

#: Sorted (name, value) pairs: a hashable, canonical form of one label set.
LabelKey = tuple[tuple[str, str], ...]


def buckets_for(name: str) -> tuple[float, ...]:
    """The finite bucket bounds of histogram `name`, ascending."""
    return HISTOGRAM_BUCKETS.get(name, DEFAULT_BUCKETS)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name == "index":
        raise ValueError(f"metric name must match [a-z_][a-z0-9_]* (not 'index'), got {name!r}")
    return name


def label_key(labels: Mapping[str, str] | None) -> LabelKey:
    """The canonical form of a label set (values as str, cut to MAX_LABEL_VALUE)."""
    if not labels:
        return ()
    out: list[tuple[str, str]] = []
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL.match(name) or name.startswith("__"):
            raise ValueError(f"label name must match [a-zA-Z_][a-zA-Z0-9_]*, got {name!r}")
        if name == "le":
            raise ValueError("label name 'le' is reserved for histogram buckets")
        out.append((name, str(value)[:MAX_LABEL_VALUE]))
    return tuple(sorted(out))


def encode_labels(key: LabelKey) -> str:
    """The hash field for a label set: compact JSON object, keys sorted."""
    return json.dumps(dict(key), separators=(",", ":"), sort_keys=True)


def decode_labels(field: str) -> LabelKey:
    data = json.loads(field)
    if not isinstance(data, dict):
        raise ValueError(f"not a label set: {field!r}")
    return tuple(sorted((str(k), str(v)) for k, v in data.items()))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """One label set of a histogram: cumulative buckets `(le, count)` ending with `(inf, n)`."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything recorded, read at one moment. Keys of the inner dicts are `LabelKey`s."""

    counters: dict[str, dict[LabelKey, float]] = field(default_factory=dict)
    histograms: dict[str, dict[LabelKey, HistogramValue]] = field(default_factory=dict)

    def counter(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One counter's value (0.0 when never counted)."""
        return self.counters.get(name, {}).get(label_key(labels), 0.0)

    def histogram(self, name: str,
                  labels: Mapping[str, str] | None = None) -> HistogramValue | None:
        return self.histograms.get(name, {}).get(label_key(labels))


class MetricsStore(RedisPart):
    """Counters and histograms shared by all workers. Methods raise `RedisError` on trouble."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        super().__init__(client, prefix, clock)
        self.ttl_ms = to_ms(ttl_seconds)
        self.index_key = self.key("metrics", "index")

    def metric_key(self, name: str) -> str:
        return self.key("metrics", _check_name(name))

    def count(self, name: str, labels: Mapping[str, str] | None = None,
              amount: float = 1.0) -> float:
        """Add `amount` (>= 0: counters only go up) to counter `name` with `labels`; returns
        the new total. One round trip (MULTI)."""
        pipe = self.client.pipeline(transaction=True)
        self.queue_count(pipe, name, labels, amount)
        return float(pipe.execute()[0])

    def queue_count(self, pipe: redis.client.Pipeline, name: str,
                    labels: Mapping[str, str] | None = None, amount: float = 1.0) -> None:
        """`count` as commands in the caller's pipeline (one round trip for a cycle's
        bookkeeping); the new total is the first of them."""
        key = self.metric_key(name)
        if name in HISTOGRAM_BUCKETS:
            raise ValueError(f"{name!r} is a histogram: use observe()")
        number(amount, "amount")
        if amount < 0:
            raise ValueError(f"a counter only goes up; amount must be >= 0, got {amount!r}")
        pipe.hincrbyfloat(key, encode_labels(label_key(labels)), float(amount))
        pipe.pexpire(key, self.ttl_ms)
        self._index(pipe, name, COUNTER)

    def observe(self, name: str, value: float,
                labels: Mapping[str, str] | None = None) -> None:
        """Record one observation of histogram `name` (e.g. a duration in seconds). One round
        trip (MULTI): its bucket, sum and count move together."""
        pipe = self.client.pipeline(transaction=True)
        self.queue_observe(pipe, name, value, labels)
        pipe.execute()

    def queue_observe(self, pipe: redis.client.Pipeline, name: str, value: float,
                      labels: Mapping[str, str] | None = None) -> None:
        """`observe` as commands in the caller's pipeline."""
        key = self.metric_key(name)
        number(value, "value")
        encoded = encode_labels(label_key(labels))
        bound = next((b for b in buckets_for(name) if value <= b), math.inf)
        pipe.hincrby(key, f"bucket:{_le(bound)}:{encoded}", 1)
        pipe.hincrbyfloat(key, f"sum:{encoded}", float(value))
        pipe.hincrby(key, f"count:{encoded}", 1)
        pipe.pexpire(key, self.ttl_ms)
        self._index(pipe, name, HISTOGRAM)

    def _index(self, pipe: redis.client.Pipeline, name: str, kind: str) -> None:
        pipe.hset(self.index_key, name, kind)
        pipe.pexpire(self.index_key, self.ttl_ms)

    def names(self) -> dict[str, str]:
        """Metric name -> kind, for everything recorded within the TTL."""
        return text_dict(self.client.hgetall(self.index_key))

    def snapshot(self) -> MetricsSnapshot:
        """Every counter and histogram: two round trips (the index, then all hashes)."""
        index = sorted(self.names().items())
        if not index:
            return MetricsSnapshot()
        pipe = self.client.pipeline(transaction=False)
        for name, _ in index:
            pipe.hgetall(self.metric_key(name))
        replies = pipe.execute()
        snap = MetricsSnapshot()
        for (name, kind), raw in zip(index, replies, strict=True):
            fields = text_dict(raw)
            if not fields:
                continue  # expired (or never written) although listed
            if kind == HISTOGRAM:
                snap.histograms[name] = _histograms(name, fields.items())
            else:
                snap.counters[name] = {decode_labels(k): float(v) for k, v in fields.items()}
        return snap

    def clear(self) -> None:
        """Forget every metric (tests, operator reset)."""
        names = list(self.names())
        self.client.delete(self.index_key, *(self.metric_key(n) for n in names))


def _histograms(name: str, fields: Iterable[tuple[str, str]]) -> dict[LabelKey, HistogramValue]:
    bounds = (*buckets_for(name), math.inf)
    per_bucket: dict[LabelKey, dict[float, float]] = {}
    sums: dict[LabelKey, float] = {}
    counts: dict[LabelKey, float] = {}
    for field_name, raw in fields:
        kind, _, rest = field_name.partition(":")
        if kind == "bucket":
            le, _, encoded = rest.partition(":")
            labels = decode_labels(encoded)
            bound = float(le)  # "+Inf" parses as inf
            per_bucket.setdefault(labels, {})[bound] = float(raw)
        elif kind == "sum":
            sums[decode_labels(rest)] = float(text(raw))
        elif kind == "count":
            counts[decode_labels(rest)] = float(text(raw))
    out: dict[LabelKey, HistogramValue] = {}
    for labels in sorted(set(per_bucket) | set(sums) | set(counts)):
        stored = per_bucket.get(labels, {})
        running = 0.0
        cumulative: list[tuple[float, float]] = []
        for bound in bounds:
            # A bound no longer configured (buckets changed) counts into the next one up.
            running += sum(v for b, v in stored.items()
                           if b <= bound and (not cumulative or b > cumulative[-1][0]))
            cumulative.append((bound, running))
        out[labels] = HistogramValue(buckets=tuple(cumulative), sum=sums.get(labels, 0.0),
                                     count=counts.get(labels, running))
    return out
