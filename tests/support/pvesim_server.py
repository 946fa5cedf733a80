"""The simulated PVE 9 cluster (pvesim) over real HTTPS, for tests.

Every request the balancer sends to a simulator started here is checked, at teardown, against
PVE's own API schema (tests/conformance/pve_schema.py): a test whose traffic PVE would reject
fails, whatever it asserted itself.

`pvesim_factory(scenario, speed=1.0)` starts one from a dict or file and returns a RunningSim;
`pvesim` is a RunningSim on SMALL_SCENARIO (3 nodes). Everything is stopped at teardown.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pvesim import SimServer, Simulator
from tests.conformance.pve_schema import request_problems
from tests.support.waiting import wait_until

T = TypeVar("T")

# Three nodes; guests chosen so each migration error path has a subject:
# 100 plain VM, 101 HA VM, 102 HA VM with an anti-affinity partner (101), 103 stopped VM,
# 104 container, 105 VM with PCI passthrough, 106 VM on local storage, 9000 template.
SMALL_SCENARIO: dict[str, Any] = {
    "cluster": {"name": "testlab"},
    "migration": {"seconds_per_gib": 1.0, "min_seconds": 2.0, "hamigrate_seconds": 1.0},
    "ha": {"crm_interval": 2.0, "lrm_delay": 0.5},
    "nodes": [
        {"name": "pve1", "threads": 16, "memory_gib": 64},
        {"name": "pve2", "threads": 16, "memory_gib": 64},
        {"name": "pve3", "threads": 16, "memory_gib": 64},
    ],
    "storages": [
        {"name": "local-lvm", "type": "lvmthin", "shared": False, "size_gib": 500},
        {"name": "ceph-vm", "type": "rbd", "shared": True, "size_tib": 10},
    ],
    "guests": [
        {"vmid": 100, "name": "web1", "node": "pve1", "cpus": 4, "memory_gib": 4,
         "cpu": 0.5, "mem_gib": 2, "tags": "prod;web"},
        {"vmid": 101, "name": "db1", "node": "pve1", "cpus": 4, "memory_gib": 8,
         "cpu": 0.3, "mem_gib": 4, "ha": "started"},
        {"vmid": 102, "name": "db2", "node": "pve2", "cpus": 4, "memory_gib": 8,
         "cpu": 0.3, "mem_gib": 4, "ha": "started"},
        {"vmid": 103, "name": "idle", "node": "pve3", "status": "stopped", "memory_gib": 2},
        {"vmid": 104, "name": "ct1", "type": "lxc", "node": "pve2", "cpus": 2,
         "memory_gib": 1, "cpu": 0.2, "mem_mib": 300},
        {"vmid": 105, "name": "gpu1", "node": "pve3", "cpus": 8, "memory_gib": 16,
         "cpu": 0.6, "mem_gib": 12, "hostpci": ["0000:01:00.0,pcie=1"]},
        {"vmid": 106, "name": "local1", "node": "pve2", "memory_gib": 2, "mem_gib": 1,
         "disks": [{"storage": "local-lvm", "size_gib": 16}]},
        {"vmid": 9000, "name": "tmpl", "node": "pve1", "template": True, "memory_gib": 2},
    ],
    "ha_rules": [
        {"rule": "db-apart", "type": "resource-affinity", "affinity": "negative",
         "resources": ["vm:101", "vm:102"]},
    ],
}


@dataclass
class RunningSim:
    """A simulator with its HTTPS server and the credentials to reach it."""

    sim: Simulator
    server: SimServer

    @property
    def host_port(self) -> str:
        return self.server.host_port

    @property
    def user(self) -> str:
        return self.sim.auth.user

    @property
    def token_name(self) -> str:
        return self.sim.auth.token_name

    @property
    def token_value(self) -> str:
        return self.sim.auth.token_value

    def proxmox(self, **kwargs: Any) -> Any:
        """A real proxmoxer.ProxmoxAPI using the scenario's token (TLS not verified)."""
        from proxmoxer import ProxmoxAPI

        options: dict[str, Any] = {
            "user": self.user,
            "token_name": self.token_name,
            "token_value": self.token_value,
            "verify_ssl": False,
            "timeout": 10,
        }
        options.update(kwargs)
        return ProxmoxAPI(self.host_port, **options)

    def stop(self) -> None:
        self.server.stop()
        self.sim.close()


PvesimFactory = Callable[..., RunningSim]


def finished_migrations(sim: Simulator) -> list[Any]:
    """The simulator's finished `qmigrate` tasks, oldest first."""
    return [m for m in sim.migration_log if m.type == "qmigrate" and m.ended is not None]


def evaluate_reads(sim: Simulator) -> int:
    """How many cycles read the cluster (one /cluster/resources per evaluate)."""
    return sum(1 for r in sim.request_log if r.path.endswith("/cluster/resources"))


def wait_for_cycles(sim: Simulator, cycles: int, timeout: float = 60.0) -> None:
    """Wait until the balancer has read the cluster `cycles` more times."""
    start = evaluate_reads(sim)
    wait_until(lambda: evaluate_reads(sim) >= start + cycles, timeout=timeout,
               what=f"{cycles} more evaluate cycles")


@pytest.fixture
def pvesim_factory() -> Iterator[PvesimFactory]:
    started: list[RunningSim] = []

    def start(
        scenario: dict[str, Any] | str | Path, speed: float = 1.0, **kwargs: Any
    ) -> RunningSim:
        if isinstance(scenario, dict):
            scenario = copy.deepcopy(scenario)
        sim = Simulator(scenario, speed=speed, **kwargs)
        running = RunningSim(sim, sim.serve(host="127.0.0.1", port=0))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
    problems = [problem for running in started for problem in client_request_problems(running)]
    if problems:
        pytest.fail("the balancer sent requests PVE's API schema rejects:\n"
                    + "\n".join(sorted(set(problems))[:20]), pytrace=False)


def client_request_problems(running: RunningSim) -> list[str]:
    """Every request our client sent (its User-Agent) checked against PVE's API schema."""
    return [problem for record in running.sim.request_log
            if record.user_agent.startswith("pve-balancer/")
            for problem in request_problems(record.method, record.path,
                                            {**record.query, **record.data})]


@pytest.fixture
def hung_host() -> Iterator[str]:
    """`host:port` that accepts TCP connections and never answers (a wedged pveproxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def pvesim(pvesim_factory: PvesimFactory) -> RunningSim:
    return pvesim_factory(SMALL_SCENARIO)
