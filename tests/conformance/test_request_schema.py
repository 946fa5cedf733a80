"""The request check itself: it rejects what PVE's JSONSchema rejects, and it sees the
client's traffic (the `pvesim_factory` fixture runs it over every test's requests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from balancer.config import ProxmoxConfig, Secret
from balancer.pve.client import PveClient
from balancer.pve.errors import PveApiError
from balancer.pve.snapshot import read_snapshot
from pvesim import Simulator
from tests.conformance.pve_schema import endpoints, request_problems
from tests.support.pvesim_server import SMALL_SCENARIO, RunningSim, client_request_problems

MIGRATE = "/nodes/pve1/qemu/100/migrate"


@pytest.mark.parametrize(("method", "path", "params", "expected"), [
    pytest.param("POST", MIGRATE, {"target": "pve2", "online": "True"},
                 "online: type check ('boolean') failed - got 'True'", id="python-bool"),
    pytest.param("POST", MIGRATE, {"online": "1"},
                 "target: property is missing and it is not optional", id="missing-target"),
    pytest.param("POST", MIGRATE, {"target": "pve2", "with_local_disks": "1"},
                 "with_local_disks: property is not defined in schema", id="misspelt"),
    pytest.param("POST", MIGRATE, {"target": "pve 2"},
                 "target: value does not match the format pve-node", id="node-format"),
    pytest.param("GET", "/nodes/pve1/tasks", {"source": "running"},
                 "does not have a value in the enumeration", id="enum"),
    pytest.param("GET", "/nodes/pve1/tasks", {"vmid": "99"},
                 "vmid: value does not match the format pve-vmid", id="vmid-range"),
    pytest.param("GET", "/cluster/tasks", {"vmid": "100"},
                 "vmid: property is not defined in schema", id="no-params-at-all"),
    pytest.param("GET", "/cluster/nosuch", {}, "no such method", id="unknown-path"),
    pytest.param("PUT", "/cluster/resources", {}, "no such method", id="unknown-method"),
])
def test_what_pve_would_reject(method: str, path: str, params: dict[str, str],
                               expected: str) -> None:
    problems = request_problems(method, path, params)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", MIGRATE, {}),
    ("GET", MIGRATE, {"target": "pve2"}),
    ("POST", MIGRATE, {"target": "pve2", "online": "1"}),
    ("GET", "/nodes/pve1/tasks", {"source": "all", "vmid": "100", "since": "1700000000",
                                  "typefilter": "qmigrate"}),
    ("GET", "/nodes/pve1/tasks/UPID:pve1:0000C350:0000B1A2:6789ABCD:qmigrate:100:"
            "balancer@pve!balancer:/status", {}),
    ("GET", "/cluster/ha/status/manager_status", {}),
    ("GET", "/access/permissions", {"path": "/vms"}),
])
def test_what_pve_accepts(method: str, path: str, params: dict[str, str]) -> None:
    assert request_problems(method, path, params) == []


def test_the_vendored_schema_covers_every_endpoint_the_client_uses() -> None:
    used = {"GET /cluster/resources", "GET /cluster/status", "GET /cluster/options",
            "GET /cluster/tasks", "GET /cluster/ha/rules",
            "GET /cluster/ha/status/manager_status", "GET /nodes/{node}/tasks",
            "GET /nodes/{node}/tasks/{upid}/status", "GET /nodes/{node}/qemu/{vmid}/migrate",
            "POST /nodes/{node}/qemu/{vmid}/migrate",
            "GET /nodes/{node}/qemu/{vmid}/status/current", "GET /version",
            "GET /access/permissions"}
    assert used <= set(endpoints())


@pytest.fixture
def private_sim() -> Iterator[RunningSim]:
    """A simulator outside `pvesim_factory`, whose teardown would fail this test's bad call."""
    sim = Simulator(SMALL_SCENARIO)
    running = RunningSim(sim, sim.serve(host="127.0.0.1", port=0))
    yield running
    running.stop()


def test_the_check_sees_the_clients_traffic(private_sim: RunningSim) -> None:
    client = PveClient(ProxmoxConfig(
        hosts=(private_sim.host_port,), user=private_sim.user,
        token_name=private_sim.token_name, token_value=Secret(private_sim.token_value),
        verify_ssl=False), sleep=lambda s: None)
    read_snapshot(client)
    client.migrate_precondition("pve1", 100)
    upid = client.migrate("pve1", 100, "pve2")
    client.task_status(upid)
    ours = [r for r in private_sim.sim.request_log if r.user_agent.startswith("pve-balancer/")]
    assert len(ours) >= 8 and client_request_problems(private_sim) == []
    with pytest.raises(PveApiError):  # PVE's /cluster/tasks takes no parameters
        client.get("cluster/tasks", vmid=100)
    assert client_request_problems(private_sim) == [
        "GET /cluster/tasks: vmid: property is not defined in schema and the schema does not "
        "allow additional properties"]
