"""The exporter against a real redis-server, scraped over HTTP like Prometheus does."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from balancer.config import Config, parse_config
from balancer.exporter import (
    DEFAULT_PORT,
    make_registry,
    resolve_port,
    run_exporter,
    start_exporter,
)
from balancer.migrations import EventKind, MigrationEvent, MigrationRef
from balancer.state import StateStore
from tests.support.redis_server import RedisServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]

PASSWORD = "s3cret-Pa55word"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def make_config(url: str, port: int = 0) -> Config:
    raw = {
        "proxmox": {"hosts": ["pve1.example.com"], "user": "balancer@pve",
                    "token_name": "balancer", "token_value": "tok"},
        "redis": {"url": url},
        "balancing": {"cpu_max": 0.75, "memory_max": 0.85},
        "metrics": {"port": port},
    }
    return parse_config(raw, env={})


def scrape(port: int) -> str:
    reply = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    return reply.text


def samples(body: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def record_state(store: StateStore) -> None:
    """What a few evaluate cycles and migrations leave in Redis."""
    store.ema.update({"pve1": 0.9, "pve2": 0.3}, sampled_at=1000.0, alpha=0.5,
                     online={"pve1", "pve2"})
    store.ema.update({"pve1": 0.7, "pve2": 0.3}, sampled_at=1005.0, alpha=0.5,
                     online={"pve1", "pve2"})
    store.ema.shift("pve2", 0.0, relieved_below=0.8)  # marked as a relieving move marks it
    store.cache.set("nodes", {"at": 1005.0, "cluster": "lab", "nodes": [
        {"name": "pve1", "online": True, "cpu": 0.7, "memory": 0.62, "maxcpu": 16,
         "maxmem": 64 << 30, "hastate": "online", "guests": 12},
        {"name": "pve2", "online": True, "cpu": 0.3, "memory": 0.41, "maxcpu": 16,
         "maxmem": 64 << 30, "hastate": "online", "guests": 8},
        {"name": "pve3", "online": False, "cpu": 0, "memory": 0, "maxcpu": 0, "maxmem": 0,
         "hastate": None, "guests": 0},
        {"bogus": "entry"},
    ]}, 600)
    m = store.metrics
    m.count("decisions", {"action": "migrate", "trigger": "cpu"})
    m.count("decisions", {"action": "migrate", "trigger": "cpu"})
    m.count("decisions", {"action": "none", "trigger": "none"})
    m.count("skipped_cycles", {"reason": "migration_in_flight"}, 3)
    m.count("migrations", {"result": "succeeded"})
    m.count("migrations", {"result": "failed"})
    for seconds in (0.02, 0.2, 0.3, 12.0):
        m.observe("evaluate_duration_seconds", seconds)
    for seconds in (8.0, 95.0):
        m.observe("migration_duration_seconds", seconds)
    token = store.lock.acquire(60)
    assert token is not None
    store.lock.attach(token, vmid=101, source="pve1", target="pve2")
    store.marks.set_cooldown(101, 600, "moved")
    store.marks.set_cooldown(102, 600, "moved")
    store.marks.mark_unmigratable(103, "local disk")
    for kind, at in ((EventKind.SUCCEEDED, 900.0), (EventKind.FAILED, 950.0),
                     (EventKind.SUCCEEDED, 990.0)):
        ref = MigrationRef(vmid=int(at), source="pve1", target="pve2", decision_id=f"d{at}")
        store.history.record_migration_event(MigrationEvent.of(EventKind.REQUESTED, ref, at - 30))
        store.history.record_migration_event(MigrationEvent.of(kind, ref, at))


@pytest.fixture
def store(redis_url: str) -> Iterator[StateStore]:
    s = StateStore.from_url(redis_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def protected_redis(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server of its own that requires a password."""
    return redis_server_factory(password=PASSWORD)


def test_scrape_over_http(redis_url: str, store: StateStore) -> None:
    record_state(store)
    exporter = start_exporter(make_config(redis_url), port=0, addr="127.0.0.1")
    try:
        body = scrape(exporter.port)
    finally:
        exporter.close()
    lines = set(body.splitlines())
    for line in (
        'pve_balancer_up{cluster="lab"} 1.0',
        'pve_balancer_node_cpu_ema{cluster="lab",id="node/pve1",node="pve1"} 0.8',
        'pve_balancer_node_cpu_ema_samples{cluster="lab",id="node/pve1",node="pve1"} 2.0',
        'pve_balancer_node_cpu_settling{cluster="lab",id="node/pve1",node="pve1"} 0.0',
        'pve_balancer_node_cpu_settling{cluster="lab",id="node/pve2",node="pve2"} 1.0',
        'pve_balancer_node_cpu_ratio{cluster="lab",id="node/pve1",node="pve1"} 0.7',
        'pve_balancer_node_memory_ratio{cluster="lab",id="node/pve2",node="pve2"} 0.41',
        'pve_balancer_node_online{cluster="lab",id="node/pve3",node="pve3"} 0.0',
        'pve_balancer_decisions_total{action="migrate",cluster="lab",trigger="cpu"} 2.0',
        'pve_balancer_skipped_cycles_total{cluster="lab",reason="migration_in_flight"} 3.0',
        'pve_balancer_migrations_total{cluster="lab",result="aborted"} 0.0',
        "# TYPE pve_balancer_decisions_total counter",
        "# TYPE pve_balancer_migration_duration_seconds histogram",
    ):
        assert line in lines, line
    assert re.search(r'^pve_balancer_build_info\{python="3\.\d+\.\d+",version="[^"]+"\} 1\.0$',
                     body, re.MULTILINE), "build_info needs no Redis and no cluster"

    got = {(name, tuple(p for p in labels if p[0] not in ("cluster", "id"))): value
           for (name, labels), value in samples(body).items()}
    assert got[("pve_balancer_node_cpu_ema", (("node", "pve2"),))] == pytest.approx(0.3)
    assert got[("pve_balancer_node_online", (("node", "pve1"),))] == 1.0
    assert got[("pve_balancer_decisions_total",
                (("action", "none"), ("trigger", "none")))] == 1.0
    assert got[("pve_balancer_migrations_total", (("result", "succeeded"),))] == 1.0
    assert got[("pve_balancer_migrations_total", (("result", "failed"),))] == 1.0
    assert got[("pve_balancer_evaluate_duration_seconds_bucket", (("le", "0.25"),))] == 2.0
    assert got[("pve_balancer_evaluate_duration_seconds_bucket", (("le", "0.5"),))] == 3.0
    assert got[("pve_balancer_evaluate_duration_seconds_sum", ())] == pytest.approx(12.52)
    assert got[("pve_balancer_migration_duration_seconds_bucket", (("le", "120.0"),))] == 2.0
    assert got[("pve_balancer_migration_duration_seconds_bucket", (("le", "1800.0"),))] == 2.0
    assert got[("pve_balancer_migration_duration_seconds_sum", ())] == 103.0
    assert got[("pve_balancer_guests_blocked", (("kind", "unmigratable"),))] == 1.0
    assert got[("pve_balancer_guests_blocked", (("kind", "backoff"),))] == 0.0
    assert got[("pve_balancer_threshold_ratio", (("resource", "cpu"),))] == 0.75
    assert got[("pve_balancer_threshold_ratio", (("resource", "memory"),))] == 0.85
    assert got[("pve_balancer_nodes_read_timestamp_seconds", ())] == 1005.0
    last_end = "pve_balancer_last_migration_end_timestamp_seconds"
    assert got[(last_end, (("result", "succeeded"),))] == 990.0, "the newest success"
    assert got[(last_end, (("result", "failed"),))] == 950.0
    assert (last_end, (("result", "aborted"),)) not in got, "none recorded: no sample"
    # The malformed node entry is skipped, not fatal.
    assert not any(labels == (("node", ""),) for _, labels in got)


def test_empty_state_serves_every_family(store: StateStore) -> None:
    body = generate_latest(make_registry(store)).decode()
    got = samples(body)
    assert got[("pve_balancer_up", ())] == 1.0
    assert got[("pve_balancer_lock_held", ())] == 0.0
    assert got[("pve_balancer_migrations_total", (("result", "succeeded"),))] == 0.0
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {
        "pve_balancer_up", "pve_balancer_node_cpu_ema", "pve_balancer_node_cpu_ema_samples",
        "pve_balancer_node_cpu_ratio", "pve_balancer_node_memory_ratio",
        "pve_balancer_node_online", "pve_balancer_decisions", "pve_balancer_skipped_cycles",
        "pve_balancer_migrations", "pve_balancer_migration_duration_seconds",
        "pve_balancer_evaluate_duration_seconds", "pve_balancer_lock_held",
        "pve_balancer_guests_blocked",
    } <= families
    # make_registry without a config: no thresholds, nothing else changes.
    assert "pve_balancer_threshold_ratio" not in families


def test_unreachable_redis_reports_down_and_hides_the_password(
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.DEBUG)
    exporter = start_exporter(make_config(url), port=0, addr="127.0.0.1")
    try:
        body = scrape(exporter.port)
        again = scrape(exporter.port)  # the exporter survives the outage
    finally:
        exporter.close()
    assert {k: v for k, v in samples(body).items() if k[0] != "pve_balancer_build_info"} == {
        ("pve_balancer_up", ()): 0.0}
    assert "pve_balancer_up 0.0" in body.splitlines()
    assert again == body
    assert PASSWORD not in body
    assert PASSWORD not in caplog.text
    assert ":***@127.0.0.1" in caplog.text  # the log does say which Redis, redacted


def test_password_protected_redis_outage_and_recovery(
        protected_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    setup = StateStore.from_url(protected_redis.url)
    try:
        setup.metrics.count("migrations", {"result": "aborted"})
    finally:
        setup.close()
    exporter = start_exporter(make_config(protected_redis.url), port=0, addr="127.0.0.1")
    try:
        body = scrape(exporter.port)
        assert samples(body)[("pve_balancer_migrations_total", (("result", "aborted"),))] == 1
        assert "pve_balancer_up 1.0" in body.splitlines()
        protected_redis.stop()
        down = scrape(exporter.port)
        assert down.splitlines()[-1] == "pve_balancer_up 0.0"
        protected_redis.start()  # no persistence: the data is gone, the exporter recovers
        wait_until(lambda: "pve_balancer_up 1.0" in scrape(exporter.port).splitlines(),
                   what="exporter to see Redis again")
    finally:
        exporter.close()
    for text in (body, down, caplog.text):
        assert PASSWORD not in text


def test_run_exporter_serves_on_the_configured_port_until_stopped(redis_url: str) -> None:
    port = free_port()
    stop = threading.Event()
    thread = threading.Thread(target=run_exporter, args=(make_config(redis_url, port),),
                              kwargs={"addr": "127.0.0.1", "stop": stop}, daemon=True)
    thread.start()

    def answers() -> bool:
        try:
            return "pve_balancer_up 1.0" in scrape(port).splitlines()
        except requests.ConnectionError:
            return False

    wait_until(answers, what="exporter on the configured port")
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_port_resolution(redis_url: str) -> None:
    assert resolve_port(make_config(redis_url, 0)) == DEFAULT_PORT == 9108
    assert resolve_port(make_config(redis_url, 9200)) == 9200
    assert resolve_port(make_config(redis_url, 9200), 9300) == 9300
    assert resolve_port(make_config(redis_url, 9200), 0) == 0  # explicit 0: any free port


def test_dashboard_queries_only_metrics_the_exporter_serves(store: StateStore) -> None:
    """docker/grafana-dashboard.json must not chart a metric name that does not exist."""
    record_state(store)
    served = {s.name for f in text_string_to_metric_families(
        generate_latest(make_registry(store, make_config("redis://unused:6379/0"))).decode())
        for s in f.samples}
    dashboard = Path(__file__).resolve().parents[1] / "docker" / "grafana-dashboard.json"
    data = json.loads(dashboard.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in data["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in data["templating"]["list"] if "definition" in v]
    used = {m for e in exprs for m in re.findall(r"\bpve_balancer_[a-z0-9_]+", e)}
    assert used and used <= served, sorted(used - served)
    # One Prometheus, many clusters: every query is scoped to the dashboard's cluster.
    for expr in exprs:
        if "label_values(pve_balancer_up, cluster)" in expr:
            continue
        for selector in re.findall(r"\bpve_balancer_[a-z0-9_]+(\{[^}]*\})?", expr):
            assert 'cluster="$cluster"' in selector, expr


def test_alert_rules_read_only_metrics_the_exporter_serves(store: StateStore) -> None:
    record_state(store)
    store.stuck.observe({"pve1"}, gap=30.0, ttl=600.0)
    store.liveness.stamp("none")
    served = {s.name for f in text_string_to_metric_families(
        generate_latest(make_registry(store)).decode()) for s in f.samples}
    rules = yaml.safe_load((ROOT / "docker" / "prometheus-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bpve_balancer_[a-z0-9_]+", e)}
    assert len(exprs) == 5 and used and used <= served, sorted(used - served)


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="no promtool here (CI installs Debian's prometheus: .ci/run)")
def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    assert shutil.which("promtool"), "CI must have promtool (.ci/run)"
    docker = ROOT / "docker"
    for command in (["check", "rules", "prometheus-alerts.yml"],
                    ["test", "rules", "prometheus-alerts.test.yml"]):
        run = subprocess.run(["promtool", *command], cwd=docker, capture_output=True,
                             text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "SUCCESS" in run.stdout


def test_the_lock_age_and_a_node_stuck_without_a_move(store: StateStore) -> None:
    """Issue 19: what the shipped alerts read (docker/prometheus-alerts.yml)."""
    clock = [5000.0]
    timed = StateStore(store.client, store.prefix, clock=lambda: clock[0])
    assert timed.lock.acquire(900.0) is not None
    timed.stuck.observe({"pve1"}, gap=30.0, ttl=600.0, now=4000.0)
    timed.stuck.observe({"pve1"}, gap=30.0, ttl=600.0, now=4020.0)
    clock[0] = 5060.0
    got = samples(generate_latest(make_registry(timed)).decode())
    assert got[("pve_balancer_lock_age_seconds", ())] == pytest.approx(60.0)
    saturated = "pve_balancer_node_saturated_no_move_seconds"
    assert got[(saturated, (("id", "node/pve1"), ("node", "pve1")))] == 20.0
    timed.stuck.observe(set(), gap=30.0, ttl=600.0, now=4025.0)
    got = samples(generate_latest(make_registry(timed)).decode())
    assert not any(name == saturated for name, _ in got), "relieved: no series"
