"""PveClient, read_snapshot and run_check with the real proxmoxer over HTTPS against pvesim."""

from __future__ import annotations

import copy
import logging
import re
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from balancer.cache import MemoryCache
from balancer.config import ProxmoxConfig, Secret
from balancer.model import GuestType
from balancer.pve import (
    PveApiError,
    PveAuthError,
    PveClient,
    PveError,
    PveMigrationUnconfirmed,
    PvePermissionError,
    PveUnreachable,
    read_snapshot,
    run_check,
)
from balancer.pve.snapshot import build_snapshot
from balancer.pve.wire import ResourceEntry
from tests.support.connect_proxy import connect_proxy
from tests.support.pvesim_server import SMALL_SCENARIO, RunningSim
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GIB = 2**30


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_client(running: RunningSim, *hosts: str, token_value: str | None = None,
                timeout: float = 10.0, **kwargs: Any) -> PveClient:
    config = ProxmoxConfig(
        hosts=hosts or (running.host_port,), user=running.user,
        token_name=running.token_name,
        token_value=Secret(token_value if token_value is not None else running.token_value),
        verify_ssl=False, timeout_seconds=timeout)
    kwargs.setdefault("sleep", lambda seconds: None)
    return PveClient(config, **kwargs)


def calls(running: RunningSim, method: str | None = None,
          match: Callable[[str], bool] = lambda path: True) -> list[Any]:
    return [r for r in running.sim.request_log
            if (method is None or r.method == method) and match(r.path)]


# --- connection, auth, permissions -----------------------------------------------------------

def test_failover_to_second_host_and_remember_it(pvesim: RunningSim) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    client = make_client(pvesim, dead, pvesim.host_port)
    status = client.cluster_status()
    assert status.name == "testlab" and status.quorate
    assert client.active_host == pvesim.host_port
    assert client.api_calls == 2  # the dead host, then the live one
    client.cluster_status()
    assert client.api_calls == 3  # the live host is tried first now


def test_unverified_self_signed_certificate_is_refused(pvesim: RunningSim) -> None:
    config = ProxmoxConfig(hosts=(pvesim.host_port,), user=pvesim.user,
                           token_name=pvesim.token_name, token_value=Secret(pvesim.token_value),
                           verify_ssl=True, timeout_seconds=5.0)
    client = PveClient(config, sleep=lambda seconds: None, max_attempts=1)
    with pytest.raises(PveUnreachable) as info:
        client.version()
    assert "TLS error" in str(info.value) and "certificate verify failed" in str(info.value)
    assert pvesim.sim.request_log == []


def test_ca_bundle_verifies_the_certificate(pvesim: RunningSim, tmp_path: Path) -> None:
    host, port = pvesim.host_port.rsplit(":", 1)
    bundle = tmp_path / "pve-ca.pem"
    bundle.write_text(ssl.get_server_certificate((host, int(port))))
    config = ProxmoxConfig(hosts=(pvesim.host_port,), user=pvesim.user,
                           token_name=pvesim.token_name, token_value=Secret(pvesim.token_value),
                           verify_ssl=True, ca_bundle=str(bundle), timeout_seconds=5.0)
    assert PveClient(config).version() == "9.0.3"


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_https_proxy_from_the_environment_carries_every_request(
        pvesim: RunningSim, clean_environment: pytest.MonkeyPatch) -> None:
    """The client reads the environment once (requests would read it twice per request):
    an operator's HTTPS_PROXY must still carry every call, not only the first."""
    with connect_proxy() as (url, tunnels):
        clean_environment.setenv("HTTPS_PROXY", url)
        client = make_client(pvesim)
        assert client.version() == "9.0.3"
        client.cluster_status()
        assert tunnels and set(tunnels) == {pvesim.host_port}
        assert len(calls(pvesim)) == 2  # both reached PVE, through the tunnel


def test_no_proxy_from_the_environment_is_honoured(
        pvesim: RunningSim, clean_environment: pytest.MonkeyPatch) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    clean_environment.setenv("HTTPS_PROXY", dead_proxy)
    with pytest.raises(PveUnreachable):
        make_client(pvesim).version()  # the proxy is taken, and it is down
    assert calls(pvesim) == []
    clean_environment.setenv("NO_PROXY", pvesim.host_port.rsplit(":", 1)[0])
    assert make_client(pvesim).version() == "9.0.3"


def test_requests_ca_bundle_from_the_environment_verifies_the_certificate(
        pvesim: RunningSim, clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host, port = pvesim.host_port.rsplit(":", 1)
    bundle = tmp_path / "pve-ca.pem"
    bundle.write_text(ssl.get_server_certificate((host, int(port))))
    clean_environment.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    config = ProxmoxConfig(hosts=(pvesim.host_port,), user=pvesim.user,
                           token_name=pvesim.token_name, token_value=Secret(pvesim.token_value),
                           verify_ssl=True, timeout_seconds=5.0)
    client = PveClient(config)
    assert client.version() == "9.0.3"
    assert client.cluster_status() is not None  # not only the first request


def test_wrong_token_gives_clear_auth_error_without_secret(
        pvesim: RunningSim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "11111111-2222-4333-8444-555555555555"
    client = make_client(pvesim, token_value=wrong)
    with pytest.raises(PveAuthError) as info:
        client.cluster_status()
    assert str(info.value) == (
        f"authentication failed for balancer@pve!balancer on host {pvesim.host_port} "
        "(check token_name/token_value)")
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert client.api_calls == 1  # a 401 is not retried
    for secret in (wrong, pvesim.token_value):
        assert secret not in str(info.value) and secret not in repr(info.value)
        assert secret not in caplog.text


def test_forbidden_names_privilege_and_path(pvesim: RunningSim) -> None:
    pvesim.sim.set_token_privileges(sys_audit=False)
    client = make_client(pvesim)
    with pytest.raises(PvePermissionError) as info:
        client.ha_rules()
    assert (info.value.privilege, info.value.acl_path) == ("Sys.Audit", "/")
    assert "Sys.Audit on /" in str(info.value) and "cluster/ha/rules" in str(info.value)
    with pytest.raises(PvePermissionError):
        read_snapshot(make_client(pvesim))  # never a snapshot without HA rules


def test_check_reports_missing_sys_audit(pvesim: RunningSim) -> None:
    pvesim.sim.set_token_privileges(sys_audit=False)
    report = run_check(make_client(pvesim))
    assert not report.ok
    assert any(p.startswith("missing Sys.Audit on /:") and "HA" in p for p in report.problems)
    assert report.pve_version == "9.0.3"


def test_check_summarises_a_healthy_cluster(pvesim: RunningSim) -> None:
    pvesim.sim.set_option_crs(ha="static", ha_auto_rebalance=True)
    report = run_check(make_client(pvesim))
    assert report.ok, report.problems
    text = "\n".join(report.lines)
    assert "PVE 9.0.3" in text and "cluster testlab: quorate, 3/3 nodes online" in text
    assert "node pve1: cpu 22% of 16 threads, memory 12% of 64.0 GiB, 3 guests" in text
    assert "guests: 6 VMs (5 running), 1 containers, 1 templates, 2 HA-managed" in text
    assert "HA rules: 0 node-affinity, 1 resource-affinity in force" in text
    assert "PVE HA auto-rebalance: on" in text
    assert any("auto-rebalance" in n for n in report.notes)


# --- retries ---------------------------------------------------------------------------------

def test_5xx_is_retried_with_backoff_then_succeeds(pvesim: RunningSim) -> None:
    port = pvesim.host_port.rsplit(":", 1)[1]
    pvesim.sim.set_faults(error_rate=1.0, error_status=503, paths=[r"^/cluster/resources$"])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the backoff pause: the trouble goes away meanwhile
        sleeps.append(seconds)
        pvesim.sim.clear_faults()

    client = make_client(pvesim, f"127.0.0.1:{port}", f"localhost:{port}", sleep=sleep)
    resources = client.cluster_resources()
    assert {e["type"] for e in resources} >= {"node", "qemu", "lxc"}
    assert [r.status for r in calls(pvesim, "GET", lambda p: p == "/cluster/resources")] == [
        503, 503, 200]  # both hosts once, a pause, then success
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5


def test_5xx_everywhere_ends_as_api_error_with_pve_text(pvesim: RunningSim) -> None:
    pvesim.sim.set_faults(error_rate=1.0, error_status=500, paths=[r"^/cluster/status$"],
                          message="got timeout")
    client = make_client(pvesim, max_attempts=3)
    with pytest.raises(PveApiError) as info:
        client.cluster_status()
    assert info.value.status == 500 and info.value.message == "got timeout"
    assert len(calls(pvesim, "GET", lambda p: p == "/cluster/status")) == 3


def test_definitive_500_is_not_retried(pvesim: RunningSim) -> None:
    client = make_client(pvesim)
    with pytest.raises(PveApiError) as info:
        client.vm_status("pve2", 100)  # 100 lives on pve1
    assert info.value.status == 500 and "does not exist" in info.value.message
    assert client.api_calls == 1


def test_offline_node_is_kept_and_its_calls_fail_with_595(pvesim: RunningSim) -> None:
    pvesim.sim.set_node_online("pve3", False)
    client = make_client(pvesim, max_attempts=2)
    snap = read_snapshot(client).snapshot
    pve3 = snap.node("pve3")
    assert pve3 is not None and not pve3.online and pve3.cpu == 0.0 and pve3.mem == 0
    assert [n.name for n in snap.nodes if n.online] == ["pve1", "pve2"]
    with pytest.raises(PveApiError) as info:
        client.vm_status("pve3", 105)
    assert info.value.status == 595 and info.value.message == "No route to host"


# --- snapshot ----------------------------------------------------------------------------------

def test_snapshot_units_and_fields(pvesim: RunningSim) -> None:
    client = make_client(pvesim, clock=lambda: 1_700_000_000.0)
    read = read_snapshot(client)
    snap = read.snapshot
    assert (snap.cluster_name, snap.quorate, snap.ha_auto_rebalance) == ("testlab", True, False)
    assert snap.taken_at == 1_700_000_000.0 and snap.warnings == ()
    pve1 = snap.node("pve1")
    assert pve1 is not None
    # base 0.02 + (4 vCPU x 0.5 + 4 vCPU x 0.3) / 16 threads; base 2 GiB + memhost 2 + 4 GiB
    assert pve1.cpu == pytest.approx(0.22)
    assert (pve1.maxcpu, pve1.mem, pve1.maxmem) == (16, 8 * GIB, 64 * GIB)
    web = snap.guest(100)
    assert web is not None
    assert (web.node, web.type, web.status, web.cpu, web.maxcpu) == (
        "pve1", GuestType.QEMU, "running", 0.5, 4)
    assert (web.mem, web.maxmem, web.memhost) == (2 * GIB, 4 * GIB, 2 * GIB)
    assert web.tags == frozenset({"prod", "web"}) and web.hastate is None
    db = snap.guest(101)
    assert db is not None and db.hastate == "started"
    ct = snap.guest(104)
    assert ct is not None and ct.type is GuestType.LXC and ct.memhost is None
    template = snap.guest(9000)
    assert template is not None and template.template and template.status == "stopped"
    [rule] = snap.resource_affinity
    assert (rule.name, rule.vmids, rule.positive) == ("db-apart", frozenset({101, 102}), False)
    assert read.running_migrations == ()


def test_cluster_resources_arrive_typed_and_read_as_the_careful_path_reads_them(
        pvesim: RunningSim, caplog: pytest.LogCaptureFixture) -> None:
    """Through proxmoxer over HTTPS, pvesim's answer (PVE's schema types, CONFORMANCE 1.1)
    takes the typed decode; the snapshot equals the one built from the generic decode of
    the same answer. proxmoxer's DEBUG line about the answer carries its size, not its
    body."""
    client = make_client(pvesim)
    with caplog.at_level(logging.DEBUG, logger="proxmoxer.core"):
        entries = client.resource_entries()
    assert entries and all(isinstance(e, ResourceEntry) for e in entries)
    [line] = [r.getMessage() for r in caplog.records if "output:" in r.getMessage()]
    assert re.search(r"output: <\d+ bytes>$", line), line
    status = client.get("cluster/status")
    typed = build_snapshot(entries, status, taken_at=1.0)
    generic = build_snapshot(client.get("cluster/resources"), status, taken_at=1.0)
    assert typed == generic and len(typed.guests) == len(SMALL_SCENARIO["guests"])


def test_ha_rules_from_pve_including_disabled(pvesim_factory: Callable[..., RunningSim]) -> None:
    scenario = copy.deepcopy(SMALL_SCENARIO)
    scenario["ha_rules"] = [
        {"rule": "db-home", "type": "node-affinity", "resources": ["vm:101"],
         "nodes": {"pve1": 2, "pve3": 1, "pve2": 0}, "strict": True},
        {"rule": "db2-pin", "type": "node-affinity", "resources": ["vm:102"],
         "nodes": "pve2", "disable": True},
    ]
    client = make_client(pvesim_factory(scenario))
    rules = client.ha_rules()
    assert [(r.name, r.vmids, r.nodes, r.strict) for r in rules.node_affinity] == [
        ("db-home", frozenset({101}), ("pve1", "pve3", "pve2"), True)]
    assert rules.disabled == ("db2-pin",) and rules.infeasible == ()


def test_infeasible_ha_rules_are_dropped_as_the_crm_drops_them(
        pvesim_factory: Callable[..., RunningSim]) -> None:
    """pve-ha-manager Rules.pm: a resource-affinity rule whose resources are in a node-affinity
    rule with several priorities is flagged, with every node-affinity rule paired with it."""
    scenario = copy.deepcopy(SMALL_SCENARIO)
    scenario["ha_rules"] += [
        {"rule": "db-home", "type": "node-affinity", "resources": ["vm:101"],
         "nodes": {"pve1": 2, "pve3": 1, "pve2": 0}, "strict": True},
        {"rule": "db2-home", "type": "node-affinity", "resources": ["vm:102"],
         "nodes": "pve2,pve3", "strict": True},
    ]
    client = make_client(pvesim_factory(scenario))
    rules = client.ha_rules()
    assert set(rules.infeasible) == {"db-apart", "db-home", "db2-home"}
    assert rules.node_affinity == () and rules.resource_affinity == ()
    snap = read_snapshot(client).snapshot
    assert [r.name for r in snap.node_affinity] == []


def test_ha_auto_rebalance_read_from_options(pvesim: RunningSim) -> None:
    pvesim.sim.set_option_crs(ha="dynamic", ha_auto_rebalance=True)
    assert read_snapshot(make_client(pvesim)).snapshot.ha_auto_rebalance is True
    assert make_client(pvesim).cluster_options().crs["ha"] == "dynamic"


def test_api_call_budget_on_a_big_cluster(pvesim_factory: Callable[..., RunningSim]) -> None:
    from pvesim.scenario import generate

    running = pvesim_factory(generate(nodes=32, guests=1500, seed=0))
    now = [1_000_000.0]
    client = make_client(running, cache=MemoryCache(), clock=lambda: now[0])
    running.sim.reset_logs()
    cycles = 24  # two minutes of 5-second cycles
    for _ in range(cycles):
        read = read_snapshot(client)
        assert len(read.snapshot.nodes) == 32 and len(read.snapshot.guests) == 1500
        assert 2 <= read.api_calls <= 6
        now[0] += 5.0
    requests = running.sim.request_log
    assert len(requests) == client.api_calls
    per_path: dict[str, int] = {}
    for record in requests:
        per_path[record.path] = per_path.get(record.path, 0) + 1
    assert per_path["/cluster/resources"] == per_path["/cluster/status"] == cycles
    assert per_path["/cluster/tasks"] == 12  # every 10 s
    assert per_path["/cluster/ha/rules"] == per_path["/cluster/options"] == 2  # every 60 s
    assert len(requests) / cycles <= 3.0


def test_cache_is_shared_between_workers_through_redis(pvesim: RunningSim,
                                                       redis_url: str) -> None:
    import redis

    from balancer.state.cache import RedisJsonCache

    cache = RedisJsonCache(redis.Redis.from_url(redis_url))
    first = read_snapshot(make_client(pvesim, cache=cache))
    second = read_snapshot(make_client(pvesim, cache=cache))
    assert first.api_calls == 6
    assert second.api_calls == 2  # resources + status; the rest came from Redis
    assert second.snapshot.resource_affinity == first.snapshot.resource_affinity


# --- migration -------------------------------------------------------------------------------

def test_migrate_sends_online_as_1_and_is_followed(pvesim: RunningSim) -> None:
    client = make_client(pvesim, tasks_ttl=0.0)
    pre = client.migrate_precondition("pve1", 100)
    assert pre.allows("pve2") and pre.running
    upid = client.migrate("pve1", 100, "pve2")
    assert upid.startswith("UPID:pve1:") and ":qmigrate:100:balancer@pve!balancer:" in upid
    [post] = calls(pvesim, "POST")
    assert post.data == {"target": "pve2", "online": "1"}  # no True, no root-only options
    status = client.task_status(upid)
    assert status.running and status.type == "qmigrate"
    moving = {m.vmid: m for m in client.running_migrations()}
    assert moving[100].evidence == ("task:qmigrate", "lock")
    assert moving[100].upid == upid and moving[100].source == "pve1"
    pvesim.sim.advance(60)
    done = client.task_status(upid)
    assert done.ok and not done.running
    guest = read_snapshot(client).snapshot.guest(100)
    assert guest is not None and guest.node == "pve2"
    since = pvesim.sim.start_time - 1
    nodes = ["pve1", "pve2", "pve3"]
    assert [t.upid for t in client.recent_balancer_migrations(since, nodes)] == [upid]


def test_recent_balancer_migrations_ignores_other_users(pvesim: RunningSim) -> None:
    client = make_client(pvesim)
    ours = client.migrate("pve1", 100, "pve3")
    pvesim.sim.start_migration(106, "pve1", user="root@pam", with_local_disks=True)
    pvesim.sim.advance(120)
    recent = client.recent_balancer_migrations(pvesim.sim.start_time - 1,
                                               ["pve1", "pve2", "pve3"])
    assert [(t.upid, t.type, t.user) for t in recent] == [
        (ours, "qmigrate", "balancer@pve!balancer")]


def test_recent_balancer_migrations_outlive_the_cluster_task_list(pvesim: RunningSim) -> None:
    """/cluster/tasks keeps ~25 finished tasks per node; a node's own history keeps ours."""
    client = make_client(pvesim)
    ours = client.migrate("pve1", 100, "pve3")
    pvesim.sim.advance(60)
    for _ in range(30):  # a busy pve1: someone moves vm 106 there and back, 30 times
        pvesim.sim.start_migration(106, "pve1", user="root@pam", with_local_disks=True)
        pvesim.sim.advance(120)
        pvesim.sim.start_migration(106, "pve2", user="root@pam", with_local_disks=True)
        pvesim.sim.advance(120)
    listed = {t["upid"] for t in pvesim.proxmox().cluster.tasks.get()}
    assert ours not in listed
    recent = client.recent_balancer_migrations(pvesim.sim.start_time - 1,
                                               ["pve1", "pve2", "pve3"])
    assert [t.upid for t in recent] == [ours]


def test_ha_vm_migrate_returns_hamigrate_and_ha_qmigrate_is_found(pvesim: RunningSim) -> None:
    client = make_client(pvesim)
    started = pvesim.sim.now()
    upid = client.migrate("pve1", 101, "pve3")
    assert ":hamigrate:101:" in upid
    pvesim.sim.advance(10)
    assert client.task_status(upid).ok
    tasks = client.find_vm_tasks("pve1", 101, since=started - 1, typefilter="qmigrate")
    assert [(t.type, t.user, t.vmid) for t in tasks] == [("qmigrate", "root@pam", 101)]


def test_precondition_reasons(pvesim: RunningSim) -> None:
    client = make_client(pvesim)
    local = client.migrate_precondition("pve2", 106)
    assert "local disks" in (local.refusal("pve1") or "")
    gpu = client.migrate_precondition("pve3", 105)
    assert not gpu.allows("pve1") and gpu.local_resources == ("hostpci0",)


def test_locked_vm_migration_is_refused_without_retry(pvesim: RunningSim) -> None:
    pvesim.sim.set_guest_lock(100, "backup")
    client = make_client(pvesim)
    with pytest.raises(PveApiError) as info:
        client.migrate("pve1", 100, "pve2")
    assert info.value.status == 500 and info.value.message == "VM is locked (backup)"
    assert [r.method for r in pvesim.sim.request_log] == ["POST"]


def test_lost_answer_to_migrate_finds_the_started_task(pvesim: RunningSim) -> None:
    """The POST outlives the client's timeout but PVE acts on it: found, not sent twice."""
    pvesim.sim.set_faults(latency_seconds=1.0, paths=[r"/qemu/100/migrate$"], methods=["POST"])
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        # The client's confirm pause: instead of waiting out the time, wait for the event it
        # waits for (PVE finishing the delayed POST).
        pauses.append(seconds)
        wait_until(lambda: calls(pvesim, "POST"), timeout=10, what="the delayed POST")

    client = make_client(pvesim, timeout=0.5, confirm_delay=3.0, sleep=pause)
    upid = client.migrate("pve1", 100, "pve2")
    assert ":qmigrate:100:balancer@pve!balancer:" in upid
    assert len(calls(pvesim, "POST")) == 1
    [record] = [m for m in pvesim.sim.migration_log if m.vmid == 100]
    assert record.upid == upid and record.target == "pve2"
    assert pauses in ([], [3.0])  # at most one confirm pause, never a second POST


def test_gateway_error_on_migrate_is_not_retried_and_unconfirmed(pvesim: RunningSim) -> None:
    pvesim.sim.set_faults(error_rate=1.0, error_status=502, paths=[r"/migrate$"],
                          methods=["POST"])
    port = pvesim.host_port.rsplit(":", 1)[1]
    client = make_client(pvesim, f"127.0.0.1:{port}", f"localhost:{port}")
    with pytest.raises(PveMigrationUnconfirmed) as info:
        client.migrate("pve1", 100, "pve2")
    assert info.value.vmid == 100 and not info.value.locked
    assert "not retried" in str(info.value)
    assert len(calls(pvesim, "POST")) == 1  # not sent to the second host either
    looked = calls(pvesim, "GET", lambda p: p == "/nodes/pve1/tasks")
    assert len(looked) == 2 and looked[0].query["vmid"] == "100"
    assert looked[0].query["source"] == "all" and "since" in looked[0].query
    assert pvesim.sim.migration_log == []


def test_lost_answer_for_an_ha_vm_finds_the_already_finished_hamigrate(
        pvesim: RunningSim) -> None:
    """PVE's `active` task list forgets a task the moment it ends; a hamigrate ends within
    a second, so the lookup must read the node's whole recent history."""
    pvesim.sim.set_faults(latency_seconds=1.0, paths=[r"/qemu/101/migrate$"], methods=["POST"])

    def pause(seconds: float) -> None:
        wait_until(lambda: calls(pvesim, "POST"), timeout=10, what="the delayed POST")
        pvesim.sim.advance(15)  # the hamigrate task has long ended when we look again

    client = make_client(pvesim, timeout=0.5, confirm_delay=3.0, sleep=pause)
    upid = client.migrate("pve1", 101, "pve3")
    assert ":hamigrate:101:balancer@pve!balancer:" in upid
    assert client.task_status(upid).ok and len(calls(pvesim, "POST")) == 1


def test_internal_error_on_migrate_is_checked_once_then_raised(pvesim: RunningSim) -> None:
    pvesim.sim.set_faults(error_rate=1.0, error_status=500, paths=[r"/migrate$"],
                          methods=["POST"], message="unable to fork worker")
    client = make_client(pvesim)
    with pytest.raises(PveApiError) as info:
        client.migrate("pve1", 100, "pve2")
    assert info.value.message == "unable to fork worker"
    assert len(calls(pvesim, "POST")) == 1
    assert len(calls(pvesim, "GET", lambda p: p == "/nodes/pve1/tasks")) == 1


def test_unreachable_host_before_post_tries_next_host(pvesim: RunningSim) -> None:
    client = make_client(pvesim, f"127.0.0.1:{closed_port()}", pvesim.host_port)
    upid = client.migrate("pve1", 100, "pve2")
    assert upid.startswith("UPID:pve1:") and client.active_host == pvesim.host_port
    assert len(calls(pvesim, "POST")) == 1


def test_task_status_rejects_garbage_upid(pvesim: RunningSim) -> None:
    with pytest.raises(PveError, match="not a UPID"):
        make_client(pvesim).task_status("UPID:nonsense")


@pytest.mark.timeout(60)
def test_a_hung_first_host_costs_a_share_of_the_deadline_not_the_cycle(
        pvesim: RunningSim, hung_host: str) -> None:
    """Issue 20.4: with timeout_seconds above the evaluate time limit, every cycle was cut off
    before failover, and the hung host stayed first forever."""
    client = make_client(pvesim, hung_host, pvesim.host_port, timeout=120.0)
    with client.deadline(4.0):
        read = read_snapshot(client)
    assert read.snapshot.node("pve1") is not None
    assert client.active_host == pvesim.host_port  # the next cycle starts with the good host
    with client.deadline(4.0):
        read_snapshot(client)
    assert len(calls(pvesim, "GET", lambda p: p == "/cluster/resources")) == 2


@pytest.mark.timeout(60)
def test_a_deadline_that_passes_ends_the_read_with_an_error(hung_host: str) -> None:
    config = ProxmoxConfig(hosts=(hung_host,), user="balancer@pve", token_name="balancer",
                           token_value=Secret("x"), verify_ssl=False, timeout_seconds=120.0)
    client = PveClient(config, sleep=lambda s: None)
    with client.deadline(1.5), pytest.raises(PveUnreachable):
        client.get("cluster/resources")
