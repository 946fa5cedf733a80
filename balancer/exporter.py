"""Prometheus exporter: one small process that reads the shared state in Redis at scrape time.

Workers are prefork processes on many hosts, so they never serve metrics themselves: they add
to counters and histograms in Redis (`balancer.state.metrics`) and publish the latest node
usage (`cache:nodes`); this process turns that, the CPU EMAs, the migration lock and the guest
marks into Prometheus metrics on every scrape. Nothing is cached here: two exporters (or a
restarted one) serve the same numbers.

When Redis does not answer, a scrape returns only `pve_balancer_up 0`; the exporter keeps
serving and recovers on its own. Neither the Redis URL nor its password is ever exposed.
"""

from __future__ import annotations

import logging
import math
import platform
import signal
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from balancer import installed_version
from balancer.config import Config
from balancer.engine.repair import ANTI_AFFINITY, PIN
from balancer.migrations import ENDS, Migration
from balancer.state import StateStore
from balancer.state.cache import NODES_CACHE, VIOLATIONS_CACHE
from balancer.state.marks import KINDS
from balancer.state.metrics import HistogramValue, LabelKey, MetricsSnapshot
from balancer.status import drain_listing

log = logging.getLogger("balancer.exporter")

#: Served when neither `--port` nor `metrics.port` says otherwise (Prometheus' exporter
#: registry has no entry for it; 9108 is this project's default).
DEFAULT_PORT = 9108
#: Short Redis timeouts: a scrape should answer `up 0` well within Prometheus' 10 s timeout.
SOCKET_TIMEOUT = 2.0
#: Rule labels of `pve_balancer_rule_violations`, always exported.
RULES = (ANTI_AFFINITY, PIN)
NS = "pve_balancer"

#: Counters recorded by the runtime: stored name -> (help, label names).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "decisions": ("Evaluate cycles that reached a decision, by action and trigger.",
                  ("action", "trigger")),
    "skipped_cycles": ("Evaluate cycles skipped without a decision, by reason.", ("reason",)),
    "migrations": ("Migrations that ended, by result (succeeded, failed, aborted).",
                   ("result",)),
}
#: Label values always exported (as 0 until counted) so that rate() works from the start.
COUNTER_SEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "migrations": tuple((str(kind),) for kind in sorted(ENDS)),
}
HISTOGRAMS: dict[str, str] = {
    "evaluate_duration_seconds": "Wall time of one evaluate cycle, seconds.",
    "migration_duration_seconds": "Duration of a migration from its start to its end, seconds.",
}


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NS}_{name}", doc, labels=list(labels))


class BalancerCollector(Collector):
    """Reads one `StateStore` on every scrape; with a `Config` it also exports the thresholds."""

    def __init__(self, store: StateStore, config: Config | None = None) -> None:
        self.store = store
        self.config = config

    def describe(self) -> Iterable[Metric]:
        """Only the always-present `up`: the rest depends on what Redis holds."""
        return [_gauge("up", "1 when Redis answered this scrape, else 0.")]

    def collect(self) -> Iterator[Metric]:
        """Every series carries `cluster` (PVE's cluster name, as the newest evaluate read
        it), so one Prometheus can scrape many clusters' exporters; node series also carry
        `id="node/NAME"`, prometheus-pve-exporter's label, so the two join."""
        yield _build_info()
        up = _gauge("up", "1 when Redis answered this scrape, else 0.")
        try:
            nodes_entry = self.store.cache.get(NODES_CACHE)
            families = list(self._families(nodes_entry))
        except Exception as exc:  # a scrape must never fail: report the outage instead
            log.warning("scrape failed: %s", type(exc).__name__,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        cluster = nodes_entry.get("cluster") if isinstance(nodes_entry, dict) else None
        for family in (up, *families):
            yield _joinable(family, cluster if isinstance(cluster, str) else "")

    def _families(self, nodes_entry: Any) -> Iterator[Metric]:
        store = self.store
        # Read everything first: a Redis error half-way must not leave a partial scrape.
        ema = store.ema.entries()
        violations_entry = store.cache.get(VIOLATIONS_CACHE)
        snapshot = store.metrics.snapshot()
        holder = store.lock.holder()
        marks = store.marks.listing()
        last = store.liveness.last()
        migrations = store.history.migrations()
        paused = store.pause.current()
        drained = {d["node"] for d in drain_listing(store)}
        stuck = store.stuck.held()
        now = store.clock()

        yield from _ema_families(ema)
        yield from _node_families(nodes_entry)
        yield from _counter_families(snapshot)
        yield from _histogram_families(snapshot)

        if last is not None:
            stamp = _gauge("last_evaluate_timestamp_seconds", "When the newest evaluate ran "
                           "(epoch seconds, Redis's clock); alert when it stops moving.")
            stamp.add_metric([], last.at)
            yield stamp

        yield _last_ends(migrations)
        yield _violations(violations_entry)

        yield _drained(nodes_entry, drained)

        pause = _gauge("paused", "1 while `pve-balancer pause` holds back every new migration.")
        pause.add_metric([], 1.0 if paused is not None else 0.0)
        yield pause

        lock = _gauge("lock_held", "1 while the cluster-wide migration lock is held.")
        lock.add_metric([], 1.0 if holder is not None else 0.0)
        yield lock
        age = _gauge("lock_age_seconds", "How long the migration lock has been held (0 when "
                     "free); a migration outliving its usual duration shows here.")
        age.add_metric([], max(0.0, now - holder.acquired_at)
                       if holder is not None and holder.acquired_at is not None else 0.0)
        yield age

        saturated = _gauge("node_saturated_no_move_seconds", "How long the node has been "
                           "above a threshold with no valid move, over consecutive cycles "
                           "(absent: not in that state).", ["node"])
        for node in sorted(stuck):
            saturated.add_metric([node], stuck[node])
        yield saturated

        blocked = _gauge("guests_blocked", "Guests the balancer keeps still, by mark kind "
                         "(cooldown, backoff, unmigratable).", ["kind"])
        per_kind = Counter(mark.kind for mark in marks)
        for kind in KINDS:
            blocked.add_metric([kind], float(per_kind.get(kind, 0)))
        yield blocked

        if self.config is not None:
            b = self.config.balancing
            threshold = _gauge("threshold_ratio", "Configured trigger threshold by resource "
                               "(balancing.cpu_max, balancing.memory_max).", ["resource"])
            threshold.add_metric(["cpu"], b.cpu_max)
            threshold.add_metric(["memory"], b.memory_max)
            yield threshold


def _build_info() -> Metric:
    family = _gauge("build_info", "Always 1; the labels say which pve-balancer and Python.",
                    ["version", "python"])
    family.add_metric([installed_version() or "unknown", platform.python_version()], 1.0)
    return family


def _joinable(family: Metric, cluster: str) -> Metric:
    """`cluster` on every sample, and prometheus-pve-exporter's `id="node/NAME"` beside our
    `node` label."""
    extra = {"cluster": cluster} if cluster else {}  # unknown before the first evaluate
    family.samples = [
        sample._replace(labels={**sample.labels, **extra,
                                **({"id": f"node/{sample.labels['node']}"}
                                   if "node" in sample.labels else {})})
        for sample in family.samples]
    return family


def _drained(nodes_entry: Any, on: set[str]) -> Metric:
    """1 for a node being drained (the drains `status` lists: by `drain`, or HA maintenance
    with evacuate_ha_maintenance), 0 for every other node the newest evaluate saw."""
    family = _gauge("node_drained", "1 while the node is drained: never a target, its "
                    "running VMs leaving one per cycle.", ["node"])
    nodes = nodes_entry.get("nodes", []) if isinstance(nodes_entry, Mapping) else []
    known = {n["name"] for n in nodes if isinstance(n, Mapping) and "name" in n}
    for node in sorted(known | on):
        family.add_metric([node], 1.0 if node in on else 0.0)
    return family


def _violations(entry: Any) -> Metric:
    """Broken placement rules the newest evaluate found, by rule (0 when none)."""
    family = _gauge("rule_violations", "Broken placement rules (ProxLB anti-affinity, pins) "
                    "found by the newest evaluate, repaired or not.", ["rule"])
    found = entry.get("violations", []) if isinstance(entry, Mapping) else []
    per_rule = Counter(v.get("rule") for v in found if isinstance(v, Mapping))
    for rule in RULES:
        family.add_metric([rule], float(per_rule.get(rule, 0)))
    return family


def _last_ends(migrations: list[Migration]) -> Metric:
    """When the newest migration of each result ended (from the history's events)."""
    family = _gauge("last_migration_end_timestamp_seconds", "When the newest recorded "
                    "migration with this result ended (epoch seconds).", ["result"])
    newest: dict[str, float] = {}
    for m in migrations:
        if m.ended and m.ended_at is not None:
            newest[str(m.state)] = max(newest.get(str(m.state), 0.0), m.ended_at)
    for result in sorted(newest):
        family.add_metric([result], newest[result])
    return family


def _ema_families(ema: Mapping[str, Any]) -> Iterator[Metric]:
    value = _gauge("node_cpu_ema", "Moving average of the node's CPU ratio that the CPU "
                   "trigger compares with balancing.cpu_max.", ["node"])
    samples = _gauge("node_cpu_ema_samples", "Samples folded into the node's CPU average.",
                     ["node"])
    settling = _gauge("node_cpu_settling", "1 while a node a move brought under cpu_max "
                      "stays within balancing.cpu_hysteresis of it: it sheds again only "
                      "above cpu_max + cpu_hysteresis.", ["node"])
    for node in sorted(ema):
        value.add_metric([node], ema[node].value)
        samples.add_metric([node], float(ema[node].samples))
        settling.add_metric([node], 1.0 if ema[node].relieved else 0.0)
    yield value
    yield samples
    yield settling


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _node_families(entry: Any) -> Iterator[Metric]:
    """From `{"at": ts, "nodes": [{"name", "online", "cpu", "memory", ...}]}`; anything
    malformed is skipped, not fatal."""
    cpu = _gauge("node_cpu_ratio", "Node CPU usage ratio at the latest cluster read.", ["node"])
    memory = _gauge("node_memory_ratio", "Node memory usage ratio at the latest cluster read.",
                    ["node"])
    online = _gauge("node_online", "1 when the node was online at the latest cluster read.",
                    ["node"])
    read_at = _gauge("nodes_read_timestamp_seconds",
                     "When the latest cluster read was taken (epoch seconds).")
    nodes = entry.get("nodes") if isinstance(entry, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            continue
        name = node["name"]
        up = _number(node.get("online"))
        if up is not None:
            online.add_metric([name], 1.0 if up else 0.0)
        for family, key in ((cpu, "cpu"), (memory, "memory")):
            ratio = _number(node.get(key))
            if ratio is not None:
                family.add_metric([name], ratio)
    at = _number(entry.get("at")) if isinstance(entry, dict) else None
    if at is not None:
        read_at.add_metric([], at)
    yield from (cpu, memory, online, read_at)


def _label_names(declared: tuple[str, ...], keys: Iterable[LabelKey]) -> tuple[str, ...]:
    """The declared label names plus any others found in the data (in a stable order)."""
    extra = sorted({name for key in keys for name, _ in key} - set(declared))
    return (*declared, *extra)


def _values(key: LabelKey, names: Sequence[str]) -> list[str]:
    labels = dict(key)
    return [labels.get(name, "") for name in names]


def _counter_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    for name in sorted(set(COUNTERS) | set(snapshot.counters)):
        doc, declared = COUNTERS.get(name, (f"Counter {name} recorded by the balancer.", ()))
        data = dict(snapshot.counters.get(name, {}))
        for seed in COUNTER_SEEDS.get(name, ()):
            data.setdefault(tuple(sorted(zip(declared, seed, strict=True))), 0.0)
        names = _label_names(declared, data)
        family = CounterMetricFamily(f"{NS}_{name}", doc, labels=list(names))
        for key in sorted(data):
            family.add_metric(_values(key, names), data[key])
        yield family


def _histogram_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    for name in sorted(set(HISTOGRAMS) | set(snapshot.histograms)):
        doc = HISTOGRAMS.get(name, f"Histogram {name} recorded by the balancer.")
        data: dict[LabelKey, HistogramValue] = snapshot.histograms.get(name, {})
        names = _label_names((), data)
        family = HistogramMetricFamily(f"{NS}_{name}", doc, labels=list(names))
        for key in sorted(data):
            value = data[key]
            buckets = [(floatToGoString(le), count) for le, count in value.buckets]
            family.add_metric(_values(key, names), buckets, value.sum)
        yield family


def make_registry(store: StateStore, config: Config | None = None) -> CollectorRegistry:
    """A registry holding only the balancer collector (no process metrics of the exporter)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BalancerCollector(store, config))
    return registry


def resolve_port(config: Config, port: int | None = None) -> int:
    """`port` when given (0: any free port), else `metrics.port`, else DEFAULT_PORT."""
    if port is not None:
        return port
    return config.metrics.port or DEFAULT_PORT


@dataclass
class Exporter:
    """A running exporter: its HTTP server (in a daemon thread) and its Redis connection."""

    server: WSGIServer
    thread: threading.Thread
    store: StateStore

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.store.close()


def start_exporter(config: Config, port: int | None = None,
                   addr: str = "127.0.0.1") -> Exporter:
    """Serve /metrics on `addr:port` from a background thread; `close()` stops it."""
    store = StateStore.from_url(config.redis.url.reveal(), socket_timeout=SOCKET_TIMEOUT)
    try:
        server, thread = start_http_server(resolve_port(config, port), addr=addr,
                                           registry=make_registry(store, config))
    except BaseException:
        store.close()
        raise
    exporter = Exporter(server=server, thread=thread, store=store)
    log.info("metrics exporter listening on %s:%d (redis %s)", addr, exporter.port,
             config.redis.redacted_url)
    return exporter


def run_exporter(config: Config, port: int | None = None, addr: str = "127.0.0.1", *,
                 stop: threading.Event | None = None) -> None:
    """Serve /metrics until `stop` is set or, in the main thread, SIGTERM/SIGINT arrives."""
    stop = stop or threading.Event()
    exporter = start_exporter(config, port, addr)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        log.info("metrics exporter stopping")
        exporter.close()
