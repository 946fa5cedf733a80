"""pvesim through the real proxmoxer client over HTTPS: fields, migrations, errors, HA, faults."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from pvesim.units import GIB
from tests.support.pvesim_server import SMALL_SCENARIO, RunningSim
from tests.support.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _error(call: Callable[[], Any]) -> ResourceException:
    with pytest.raises(ResourceException) as info:
        call()
    return info.value


def _finish(running: RunningSim, prox: Any, upid: str, advance: float = 60) -> dict[str, Any]:
    """Let simulated time pass, then read the task's final status the way clients do."""
    running.sim.advance(advance)
    status = Tasks.blocking_status(prox, upid, timeout=5, polling_interval=0.02)
    assert status is not None
    return status


def _log(prox: Any, upid: str) -> str:
    node = Tasks.decode_upid(upid)["node"]
    return Tasks.decode_log(prox.nodes(node).tasks(upid).log.get(limit=0))


def test_cluster_resources_fields_and_units(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    vms = {r["vmid"]: r for r in prox.cluster.resources.get(type="vm")}
    web = vms[100]
    assert web["id"] == "qemu/100" and web["type"] == "qemu" and web["node"] == "pve1"
    assert web["status"] == "running" and web["template"] == 0
    assert web["maxcpu"] == 4 and web["cpu"] == pytest.approx(0.5)
    assert web["maxmem"] == 4 * GIB and web["mem"] == 2 * GIB and web["memhost"] == 2 * GIB
    assert web["tags"] == "prod;web"
    assert "lock" not in web and "hastate" not in web
    assert vms[101]["hastate"] == "started"
    assert vms[104]["type"] == "lxc" and vms[104]["memhost"] == 0  # PVE 9: always 0 for CTs
    assert vms[9000]["template"] == 1 and vms[9000]["status"] == "stopped"
    assert [r["vmid"] for r in vms.values()] == sorted(vms, key=str)

    nodes = {r["node"]: r for r in prox.cluster.resources.get(type="node")}
    pve1 = nodes["pve1"]
    assert pve1["maxcpu"] == 16 and pve1["maxmem"] == 64 * GIB and pve1["hastate"] == "online"
    # base 0.02 + (4 vCPU x 0.5 + 4 x 0.3) / 16 threads
    assert pve1["cpu"] == pytest.approx(0.02 + (2.0 + 1.2) / 16)
    storages = prox.cluster.resources.get(type="storage")
    assert {s["storage"] for s in storages} == {"local-lvm", "ceph-vm"}
    assert all(s["shared"] in (0, 1) for s in storages)

    err = _error(lambda: prox.cluster.resources.get(type="vms"))
    assert err.status_code == 400 and "type" in err.errors


def test_node_endpoints(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    status = prox.nodes("pve1").status.get()
    assert status["cpuinfo"]["cpus"] == 16 and len(status["loadavg"]) == 3
    assert status["memory"]["total"] == 64 * GIB
    qemu = {g["vmid"]: g for g in prox.nodes("pve1").qemu.get()}
    assert set(qemu) == {100, 101, 9000}
    assert qemu[100]["cpus"] == 4 and "maxcpu" not in qemu[100] and "node" not in qemu[100]
    assert [c["vmid"] for c in prox.nodes("pve2").lxc.get()] == [104]
    config = prox.nodes("pve1").qemu(100).config.get()
    assert config["memory"] == "4096" and config["tags"] == "prod;web" and config["digest"]
    assert config["scsi0"].startswith("ceph-vm:vm-100-disk-0,")
    current = prox.nodes("pve1").qemu(101).status.current.get()
    assert current["ha"] == {"managed": 1, "state": "started"} and current["qmpstatus"] == "running"
    assert prox.nodes("pve2").version.get()["version"].startswith("9.")
    rrd = prox.nodes("pve1").rrddata.get(timeframe="hour", cf="AVERAGE")
    assert len(rrd) == 60 and rrd[-1]["cpu"] == pytest.approx(0.22)
    vm_rrd = prox.nodes("pve1").qemu(100).rrddata.get(timeframe="hour", cf="MAX")
    assert vm_rrd[-1]["maxcpu"] == 4 and vm_rrd[-1]["cpu"] == pytest.approx(0.5)
    err = _error(lambda: prox.nodes("pve2").qemu(100).status.current.get())
    assert err.status_code == 500
    assert err.content == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"


def test_offline_node(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    pvesim.sim.set_node_online("pve3", False)
    # pmxcfs keeps the last broadcast for 5 minutes: sizes and the guests' last sample stay.
    resources = {r["id"]: r for r in prox.cluster.resources.get()}
    assert resources["node/pve3"] == {
        "id": "node/pve3", "node": "pve3", "type": "node", "status": "offline", "level": "",
        "maxcpu": 16, "maxmem": 64 * GIB, "maxdisk": 100 * GIB, "cgroup-mode": 2,
        "hastate": "unknown",
    }
    stale = resources["qemu/105"]
    assert stale["status"] == "running" and stale["cpu"] == pytest.approx(0.6)
    pvesim.sim.advance(300)
    resources = {r["id"]: r for r in prox.cluster.resources.get()}
    assert resources["node/pve3"] == {
        "id": "node/pve3", "node": "pve3", "type": "node", "status": "offline",
        "cgroup-mode": 2, "hastate": "unknown",
    }
    assert resources["qemu/105"] == {
        "id": "qemu/105", "vmid": 105, "node": "pve3", "type": "qemu", "status": "unknown",
    }
    err = _error(lambda: prox.nodes("pve3").status.get())
    assert err.status_code == 595 and err.content == "No route to host"
    members = {m["name"]: m["online"] for m in prox.cluster.status.get() if m["type"] == "node"}
    assert members == {"pve1": 1, "pve2": 1, "pve3": 0}
    # PVE only notices an unreachable target inside the task.
    upid = prox.nodes("pve1").qemu(100).migrate.post(target="pve3", online=1)
    assert _finish(pvesim, prox, upid)["exitstatus"] == "migration aborted"
    assert "Can't connect to destination address" in _log(prox, upid)
    assert pvesim.sim.guest(100).node == "pve1"


def test_live_migration_with_task_tracking(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    mem_before = sim.node("pve2").mem
    upid = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    info = Tasks.decode_upid(upid)
    assert info["type"] == "qmigrate" and info["id"] == "100" and info["node"] == "pve1"
    assert upid.split(":")[7] == "balancer@pve!balancer"
    vm = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 100)
    assert vm["lock"] == "migrate" and vm["node"] == "pve1"
    assert sim.node("pve2").mem == mem_before + 2 * GIB  # memory counted on both nodes
    running = prox.nodes("pve1").tasks(upid).status.get()
    assert running["status"] == "running" and "exitstatus" not in running
    assert running["user"] == "balancer@pve" and running["tokenid"] == "balancer"
    err = _error(lambda: prox.nodes("pve1").qemu(100).migrate.post(target="pve3", online=1))
    assert err.content == "VM is locked (migrate)"

    status = _finish(pvesim, prox, upid)
    assert status["exitstatus"] == "OK"
    assert "migration finished successfully" in _log(prox, upid)
    vm = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 100)
    assert vm["node"] == "pve2" and "lock" not in vm
    assert sim.node("pve2").mem == mem_before + 2 * GIB
    record = sim.migration_log[-1]
    assert (record.vmid, record.source, record.target, record.exitstatus) == (
        100, "pve1", "pve2", "OK",
    )
    assert record.ended is not None and record.ended - record.started >= 2.0
    archive = prox.nodes("pve1").tasks.get(typefilter="qmigrate", vmid=100)
    assert [t["upid"] for t in archive] == [upid] and archive[0]["status"] == "OK"
    err = _error(lambda: prox.nodes("pve2").tasks(upid).status.get())
    assert err.status_code == 400 and err.errors == {"upid": "no such task"}
    # read_task_log has no such check: dump_logfile reports the missing file as a line
    assert prox.nodes("pve2").tasks(upid).log.get() == [
        {"n": 1, "t": "unable to open file - No such file or directory"}]


@pytest.mark.parametrize(
    ("node", "vmid", "params", "status", "content", "errors"),
    [
        ("pve1", 100, {"target": "pve1", "online": 1}, 400, "Parameter verification failed.",
         {"target": "target is local node."}),
        ("pve1", 100, {"target": "pve2", "online": True}, 400, "Parameter verification failed.",
         {"online": "type check ('boolean') failed - got 'True'"}),
        ("pve1", 100, {"target": "pve2", "online": 1, "speed": 1}, 400,
         "Parameter verification failed.", None),
        ("pve1", 100, {"target": "pve9", "online": 1}, 500, "no such cluster node 'pve9'", None),
        ("pve2", 100, {"target": "pve3", "online": 1}, 500,
         "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist", None),
        ("pve2", 104, {"target": "pve1", "online": 1}, 500,
         "Configuration file 'nodes/pve2/qemu-server/104.conf' does not exist", None),
        ("pve1", 100, {"target": "pve2"}, 500, "can't migrate running VM without --online", None),
        ("pve1", 100, {"target": "pve2", "online": 1, "force": 1}, 400,
         "Parameter verification failed.", {"force": "Only root may use this option."}),
    ],
)
def test_migration_refusals(
    pvesim: RunningSim,
    node: str,
    vmid: int,
    params: dict[str, Any],
    status: int,
    content: str,
    errors: dict[str, str] | None,
) -> None:
    prox = pvesim.proxmox()
    err = _error(lambda: prox.nodes(node).qemu(vmid).migrate.post(**params))
    assert err.status_code == status
    assert err.content == content
    if errors is not None:
        assert err.errors == errors
    if "speed" in params:
        assert "property is not defined in schema" in err.errors["speed"]
    assert not pvesim.sim.migration_log


def test_locked_vm_and_no_quorum(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    pvesim.sim.set_guest_lock(100, "backup")
    err = _error(lambda: prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1))
    assert (err.status_code, err.content) == (500, "VM is locked (backup)")
    pvesim.sim.set_guest_lock(100, None)
    pvesim.sim.set_quorate(False)
    err = _error(lambda: prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1))
    assert (err.status_code, err.content) == (500, "cluster not ready - no quorum?")
    assert prox.cluster.status.get()[0]["quorate"] == 0


def test_asynchronous_failures(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    # PCI passthrough: accepted, then the task aborts.
    gpu = prox.nodes("pve3").qemu(105).migrate.post(target="pve1", online=1)
    # Local disk on a running VM without with-local-disks.
    local = prox.nodes("pve2").qemu(106).migrate.post(target="pve1", online=1)
    sim.fail_next_migration(100, "migration problems")
    flaky = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert _finish(pvesim, prox, gpu)["exitstatus"] == "migration aborted"
    assert "can't migrate VM which uses local devices: hostpci0" in _log(prox, gpu)
    assert Tasks.blocking_status(prox, local, 5, 0.02)["exitstatus"] == "migration aborted"
    assert "with-local-disks" in _log(prox, local)
    assert Tasks.blocking_status(prox, flaky, 5, 0.02)["exitstatus"] == "migration problems"
    assert [sim.guest(v).node for v in (105, 106, 100)] == ["pve3", "pve2", "pve1"]
    assert sim.guest(100).lock is None
    ok = prox.nodes("pve2").qemu(106).migrate.post(target="pve1", online=1,
                                                  **{"with-local-disks": 1})
    assert _finish(pvesim, prox, ok, 300)["exitstatus"] == "OK"  # 16 GiB disk copy takes a while
    assert sim.guest(106).node == "pve1"


def test_preconditions(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    gpu = prox.nodes("pve3").qemu(105).migrate.get()
    assert gpu["running"] == 1 and gpu["local_resources"] == ["hostpci0"]
    assert gpu["allowed_nodes"] == ["pve1", "pve2"]
    local = prox.nodes("pve2").qemu(106).migrate.get(target="pve1")
    assert local["local_disks"][0]["volid"] == "local-lvm:vm-106-disk-0"
    assert local["local_disks"][0]["size"] == 16 * GIB
    ha = prox.nodes("pve1").qemu(101).migrate.get()
    assert ha["not_allowed_nodes"] == {  # PVE keys every other node, {} when clean
        "pve2": {"blocking-ha-resources": [{"sid": "vm:102", "cause": "resource-affinity"}]},
        "pve3": {},
    }
    assert ha["allowed_nodes"] == ["pve3"]
    assert prox.nodes("pve1").qemu(101).migrate.get(target="pve3") == ha  # target is ignored


def test_container_migration(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    err = _error(lambda: prox.nodes("pve2").lxc(104).migrate.post(target="pve1"))
    assert err.content == "can't migrate running container without --online or --restart"
    live = prox.nodes("pve2").lxc(104).migrate.post(target="pve1", online=1)
    assert _finish(pvesim, prox, live)["exitstatus"] == "migration aborted"
    upid = prox.nodes("pve2").lxc(104).migrate.post(target="pve1", restart=1)
    assert Tasks.decode_upid(upid)["type"] == "vzmigrate"
    assert pvesim.sim.guest(104).status == "stopped"  # shut down during restart migration
    assert _finish(pvesim, prox, upid)["exitstatus"] == "OK"
    guest = pvesim.sim.guest(104)
    assert (guest.node, guest.status) == ("pve1", "running")


def test_ha_managed_vm_goes_through_the_crm(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    upid = prox.nodes("pve1").qemu(101).migrate.post(target="pve3", online=1)
    ha_task = Tasks.decode_upid(upid)
    assert ha_task["type"] == "hamigrate" and ha_task["user"] == "balancer@pve"
    sim.advance(1.5)
    assert Tasks.blocking_status(prox, upid, 5, 0.02)["exitstatus"] == "OK"
    assert sim.guest(101).node == "pve1"  # hamigrate only queued the request

    def lrm_task() -> list[dict[str, Any]]:
        sim.advance(1)
        return prox.nodes("pve1").tasks.get(
            typefilter="qmigrate", vmid=101, since=ha_task["starttime"], source="all"
        )

    found = wait_until(lrm_task, timeout=5, what="the LRM's qmigrate")
    assert found[0]["user"] == "root@pam" and "tokenid" not in found[0]
    assert _finish(pvesim, prox, found[0]["upid"])["exitstatus"] == "OK"
    assert sim.guest(101).node == "pve3"
    assert sim.guest(101).hastate == "started"
    status = prox.cluster.ha.status.manager_status.get()
    assert status["manager_status"]["service_status"]["vm:101"]["node"] == "pve3"
    types = [r.type for r in sim.migration_log]
    assert types == ["hamigrate", "qmigrate"]


def test_ha_requests_blocked_or_dropped(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    # Anti-affinity partner 102 lives on pve2: the hamigrate task itself fails.
    blocked = prox.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1)
    assert "failed: exit code" in _finish(pvesim, prox, blocked, 2)["exitstatus"]
    # Target in maintenance: the task succeeds but the CRM drops the request.
    sim.set_node_hastate("pve3", "maintenance")
    dropped = prox.nodes("pve1").qemu(101).migrate.post(target="pve3", online=1)
    assert _finish(pvesim, prox, dropped, 30)["exitstatus"] == "OK"
    assert sim.guest(101).node == "pve1"
    assert any("is not online" in line for _, line in sim.ha_log())
    assert not [r for r in sim.migration_log if r.type == "qmigrate"]
    current = prox.cluster.ha.status.current.get()
    lrm = next(e for e in current if e["id"] == "lrm:pve3")
    assert "maintenance mode" in lrm["status"]


def test_wrong_or_missing_credentials(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox(token_value="11111111-1111-4111-8111-111111111111")
    err = _error(lambda: prox.version.get())
    assert (err.status_code, err.content) == (401, "Authentication failed!")
    response = requests.get(f"{pvesim.server.url}/api2/json/version", verify=False, timeout=5)
    assert (response.status_code, response.reason) == (401, "No ticket")
    unknown = requests.get(
        f"{pvesim.server.url}/api2/json/nodes/pve1/frobnicate",
        headers={"Authorization": f"PVEAPIToken={pvesim.sim.auth.token_id}={pvesim.token_value}"},
        verify=False,
        timeout=5,
    )
    assert unknown.status_code == 501
    assert unknown.reason == "Method 'GET /nodes/pve1/frobnicate' not implemented"
    assert unknown.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert unknown.json()["message"].endswith("\n")
    assert pvesim.sim.request_log[0].status == 401 and pvesim.sim.request_log[0].user is None


def test_password_ticket_login(pvesim_factory: Callable[..., RunningSim]) -> None:
    scenario = dict(SMALL_SCENARIO, auth={"password": "s3cret"})
    running = pvesim_factory(scenario)
    prox = ProxmoxAPI(running.host_port, user="balancer@pve", password="s3cret", verify_ssl=False)
    upid = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert upid.split(":")[7] == "balancer@pve"
    with pytest.raises(Exception, match=r"authentication failure|401"):
        ProxmoxAPI(running.host_port, user="balancer@pve", password="nope", verify_ssl=False)


def test_fault_injection(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    pvesim.sim.set_faults(error_rate=1.0, error_status=503, paths=["^/cluster/resources"])
    err = _error(lambda: prox.cluster.resources.get())
    assert err.status_code == 503 and err.content == "Service Unavailable"
    assert prox.version.get()["release"] == "9.0"
    pvesim.sim.set_faults(error_rate=0.5, paths=["^/version"])
    outcomes = []
    for _ in range(10):
        try:
            prox.version.get()
            outcomes.append(200)
        except ResourceException as exc:
            outcomes.append(exc.status_code)
    assert set(outcomes) == {200, 500}
    pvesim.sim.set_faults(latency_seconds=0.2, paths=["^/version"])
    started = time.monotonic()
    prox.version.get()
    assert time.monotonic() - started >= 0.2
    pvesim.sim.clear_faults()
    assert prox.cluster.resources.get(type="node")


def test_speed_factor_and_concurrency(pvesim_factory: Callable[..., RunningSim]) -> None:
    running = pvesim_factory(SMALL_SCENARIO, speed=50.0)
    sim = running.sim
    start = sim.now()
    wait_until(lambda: sim.now() - start >= 10, timeout=2, what="10 simulated seconds")
    prox = running.proxmox()
    sim.set_speed(1.0)  # start all three within one simulated second so they overlap
    upids = [
        prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1),
        prox.nodes("pve3").qemu(103).migrate.post(target="pve1"),
        prox.nodes("pve1").qemu(9000).migrate.post(target="pve3"),
    ]
    assert sim.running_migrations() == 3
    sim.set_speed(100.0)
    for upid in upids:
        status = Tasks.blocking_status(prox, upid, timeout=10, polling_interval=0.02)
        assert status is not None and status["exitstatus"] == "OK"
    assert sim.max_concurrent_migrations == 3
    assert [sim.guest(v).node for v in (100, 103, 9000)] == ["pve2", "pve1", "pve3"]
    posts = [r for r in sim.request_log if r.method == "POST"]
    assert [r.path for r in posts] == [
        "/nodes/pve1/qemu/100/migrate",
        "/nodes/pve3/qemu/103/migrate",
        "/nodes/pve1/qemu/9000/migrate",
    ]
    assert posts[0].data == {"target": "pve2", "online": "1"}
    assert posts[0].user == "balancer@pve!balancer" and posts[0].status == 200
    assert all(r.sim_time >= start for r in sim.request_log)


def test_token_without_sys_audit(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    mine = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    human = sim.start_migration(103, "pve1")
    assert human.split(":")[7] == "root@pam"
    visible = {t["upid"] for t in prox.cluster.tasks.get()}
    assert {mine, human} <= visible
    sim.set_token_privileges(sys_audit=False)
    # Cluster.pm `tasks` compares the split user with the token id: a token sees nothing.
    assert prox.cluster.tasks.get() == []
    # Tasks.pm `$check_task_user`: the node lists show the token its own tasks only...
    listed = prox.nodes("pve1").tasks.get(source="all")
    assert [t["upid"] for t in listed] == [mine]
    assert prox.nodes("pve1").tasks(mine).status.get()["status"] == "running"
    # ...and somebody else's task status or log is a 403, not "no such task".
    for read in (lambda: prox.nodes("pve3").tasks(human).status.get(),
                 lambda: prox.nodes("pve3").tasks(human).log.get()):
        err = _error(read)
        assert (err.status_code, err.content) == (
            403, "Permission check failed (/nodes/pve3, Sys.Audit)")
    err = _error(lambda: prox.cluster.ha.resources.get())
    assert (err.status_code, err.content) == (403, "Permission check failed (/, Sys.Audit)")
    # RPCEnvironment get_effective_permissions leaves out paths without privileges.
    assert prox.access.permissions.get() == {"/vms": {"VM.Audit": 1, "VM.Migrate": 1}}
    assert prox.access.permissions.get(path="/nodes/pve1") == {"/nodes/pve1": {}}


def test_permissions_as_pve_9_resolves_them(pvesim: RunningSim) -> None:
    perms = pvesim.proxmox().access.permissions.get()
    auditor = {"VM.Audit": 1, "VM.GuestAgent.Audit": 1, "Sys.Audit": 1, "Datastore.Audit": 1,
               "SDN.Audit": 1, "Pool.Audit": 1, "Mapping.Audit": 1}  # no VM.Monitor in PVE 9
    assert perms == {
        **{path: auditor for path in ("/", "/access", "/access/groups", "/nodes", "/pool",
                                      "/sdn", "/storage")},
        "/vms": {"VM.Audit": 1, "VM.Migrate": 1},  # the deeper ACL replaces the inherited
    }
    assert pvesim.proxmox().access.permissions.get(path="/vms/101") == {
        "/vms/101": {"VM.Audit": 1, "VM.Migrate": 1}}


def test_cluster_tasks_and_options(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    sim.set_option_crs(ha="static", ha_auto_rebalance=True)
    assert prox.cluster.options.get()["crs"] == {"ha": "static", "ha-auto-rebalance": 1}
    upid = prox.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    running = next(t for t in prox.cluster.tasks.get() if t["upid"] == upid)
    assert "endtime" not in running and running["saved"] == "0" and running["pid"]
    sim.advance(30)
    done = next(t for t in prox.cluster.tasks.get() if t["upid"] == upid)
    assert done["status"] == "OK" and done["endtime"] >= done["starttime"]
    rules = prox.cluster.ha.rules.get()
    assert rules[0]["rule"] == "db-apart" and rules[0]["resources"] == "vm:101,vm:102"
    assert {r["sid"] for r in prox.cluster.ha.resources.get()} == {"vm:101", "vm:102"}
    err = _error(lambda: prox.cluster.ha.groups.get())
    assert err.content == "cannot index groups: ha groups have been migrated to rules"


def test_node_task_lists_follow_tasks_pm(pvesim: RunningSim) -> None:
    prox = pvesim.proxmox()
    sim = pvesim.sim
    done = prox.nodes("pve1").qemu(9000).migrate.post(target="pve2")
    sim.advance(30)
    running = prox.nodes("pve1").qemu(100).migrate.post(target="pve3", online=1)
    tasks = prox.nodes("pve1").tasks
    # `active` holds only unfinished tasks, with the full token id and saved "0".
    active = tasks.get(source="active")
    assert [t["upid"] for t in active] == [running]
    assert active[0]["user"] == "balancer@pve!balancer" and "tokenid" not in active[0]
    assert (active[0]["saved"], active[0]["status"]) == ("0", "RUNNING")
    assert active[0]["pstart"] and "endtime" not in active[0]
    archived = tasks.get()
    assert [t["upid"] for t in archived] == [done] and archived[0]["tokenid"] == "balancer"
    assert "saved" not in archived[0]
    # userfilter matches the entry's user: full id when active, split when archived.
    assert [t["upid"] for t in tasks.get(source="all", userfilter="!balancer")] == [running]
    # errors=1 keeps running tasks and overrides statusfilter; limit=0 lists nothing.
    assert [t["upid"] for t in tasks.get(source="all", errors=1, statusfilter="ok")] == [
        running]
    assert [t["upid"] for t in tasks.get(source="all", statusfilter="ok")] == [done]
    response = requests.get(
        f"{pvesim.server.url}/api2/json/nodes/pve1/tasks?source=all&limit=0",
        headers={"Authorization": f"PVEAPIToken={sim.auth.token_id}={pvesim.token_value}"},
        verify=False, timeout=5,
    ).json()
    assert response == {"data": [], "total": 2}
    page = requests.get(
        f"{pvesim.server.url}/api2/json/nodes/pve1/tasks?source=all&start=1&limit=5",
        headers={"Authorization": f"PVEAPIToken={sim.auth.token_id}={pvesim.token_value}"},
        verify=False, timeout=5,
    ).json()
    assert [t["upid"] for t in page["data"]] == [done] and page["total"] == 2


def test_migrate_task_phases_as_qemu_server_runs_them(
    pvesim_factory: Callable[..., RunningSim],
) -> None:
    scenario = copy.deepcopy(SMALL_SCENARIO)
    scenario["storages"].append({"name": "local", "type": "dir", "shared": False,
                                 "content": "iso,images"})
    scenario["guests"] += [
        {"vmid": 107, "name": "mapped", "node": "pve1", "memory_gib": 2,
         "hostpci": ["mapping=gpu1,pcie=1"], "usb": ["spice"]},
        {"vmid": 108, "name": "iso", "node": "pve1", "status": "stopped", "memory_gib": 2,
         "disks": [{"storage": "ceph-vm", "size_gib": 8}, {"cdrom": "local:iso/x.iso"}]},
    ]
    running = pvesim_factory(scenario)
    prox = running.proxmox()
    # Helpers.pm check_local_resources: a mapped hostpci is local while running; no
    # `live-migration` key unless the mapping is live-capable.
    check = prox.nodes("pve1").qemu(107).migrate.get()
    assert check["local_resources"] == ["hostpci0"]
    assert check["mapped-resource-info"] == {"hostpci0": {"name": "gpu1"}}
    upid = prox.nodes("pve1").qemu(107).migrate.post(target="pve2", online=1)
    assert _finish(running, prox, upid)["exitstatus"] == "migration aborted"
    assert ("can't live migrate running VM which uses following mapped devices: "
            "hostpci0:gpu1") in _log(prox, upid)
    # A local ISO: listed as a local disk without size; scanned in phase 1 (locked), then
    # QemuMigrate.pm scan_local_volumes gives up.
    iso = prox.nodes("pve1").qemu(108).migrate.get()
    assert iso["local_disks"] == [{
        "volid": "local:iso/x.iso", "cdrom": 1, "is_cloudinit": 0, "replicate": 1,
        "shared": 0, "is_unused": 0, "is_attached": 1, "is_vmstate": 0, "is_tpmstate": 0,
        "drivename": "ide2"}]
    upid = prox.nodes("pve1").qemu(108).migrate.post(target="pve2")
    assert running.sim.guest(108).lock == "migrate"
    assert _finish(running, prox, upid)["exitstatus"] == "migration aborted"
    log = _log(prox, upid)
    assert "can't migrate local disk 'local:iso/x.iso': local cdrom image" in log
    assert ("migration aborted (duration 00:00:02): Problem found while scanning volumes - "
            "can't migrate VM - check log") in log
    assert running.sim.guest(108).lock is None
    # PVE 9 accepts targetstorage for an offline migration (qemu-server bcd5401a).
    upid = prox.nodes("pve3").qemu(103).migrate.post(target="pve1", targetstorage="ceph-vm")
    assert _finish(running, prox, upid)["exitstatus"] == "OK"


def test_container_precondition_has_pve_containers_shape(pvesim: RunningSim) -> None:
    # pve-container API2/LXC.pm migrate_vm_precondition: dashed keys, blocked nodes only.
    check = pvesim.proxmox().nodes("pve2").lxc(104).migrate.get()
    assert check == {"running": 1, "allowed-nodes": ["pve1", "pve3"], "not-allowed-nodes": {}}
