"""Scenario loading, validation, load profiles and the synthetic generator (no server)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pvesim import Simulator, generate, load_scenario
from pvesim.profile import PeriodicProfile, SpikeProfile, StepProfile, parse_profile
from pvesim.scenario import ScenarioError
from pvesim.units import GIB, MIB, parse_size
from tests.support.pvesim_server import SMALL_SCENARIO

SCENARIOS = Path(__file__).resolve().parent.parent / "config" / "scenarios"


def _scenario(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SMALL_SCENARIO)
    data.update(changes)
    return data


def test_sizes_accept_bytes_units_and_suffixed_keys() -> None:
    assert parse_size(1024) == 1024
    assert parse_size("8G") == 8 * GIB
    assert parse_size("512 MiB") == 512 * MIB
    scenario = load_scenario(
        {"nodes": [{"name": "a", "memory": "64G"}, {"name": "b", "memory_mib": 2048}]}
    )
    assert [n.memory for n in scenario.nodes] == [64 * GIB, 2 * GIB]


def test_small_scenario_defaults() -> None:
    scenario = load_scenario(SMALL_SCENARIO)
    guest = {g.vmid: g for g in scenario.guests}
    assert guest[100].tags == ("prod", "web")
    assert guest[100].disks[0].volid == "ceph-vm:vm-100-disk-0"
    assert guest[104].disks[0].volid.startswith("ceph-vm:")
    assert guest[9000].status == "stopped"
    assert guest[101].sid == "vm:101" and guest[101].ha is not None
    assert scenario.auth.token_id == "balancer@pve!balancer"


def test_all_problems_are_reported_with_locations() -> None:
    bad = _scenario(
        nodes=[{"name": "pve1", "memroy_gib": 4}, {"name": "bad_name"}],
        guests=[
            {"vmid": 100, "node": "nowhere"},
            {"vmid": 100, "node": "pve1", "cpu": "high"},
            {"vmid": 101, "node": "pve1", "disks": [{"storage": "nope"}]},
        ],
        ha_rules=[{"rule": "r", "type": "resource-affinity", "resources": [100, 101]}],
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    text = str(info.value)
    for expected in (
        "nodes[0] (pve1): unknown key(s): memroy_gib",
        "invalid node name 'bad_name'",
        "node 'nowhere' is not defined",
        "duplicate vmid 100",
        "'cpu' must be a number",
        "storage 'nope' is not defined",
        "'affinity' is required",
        "resource vm:100 is not an HA-managed guest",
    ):
        assert expected in text


def test_bad_profile_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sorted"):
        parse_profile([{"at": 10, "cpu": 1}, {"at": 0, "cpu": 0.5}])
    with pytest.raises(ValueError, match="unknown shape"):
        parse_profile({"shape": "sawtooth"})
    path = tmp_path / "broken.yaml"
    path.write_text("nodes: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(path)
    json_path = tmp_path / "s.json"
    json_path.write_text(json.dumps(SMALL_SCENARIO))
    assert len(load_scenario(json_path).nodes) == 3


def test_profiles_over_time() -> None:
    steps = parse_profile([{"at": 0, "cpu": 0.2}, {"at": 100, "cpu": 0.9, "mem_gib": 2}])
    assert isinstance(steps, StepProfile)
    assert steps.cpu(-5) is None and steps.cpu(50) == 0.2 and steps.cpu(150) == 0.9
    assert steps.mem(50) is None and steps.mem(150) == 2 * GIB
    wave = parse_profile({"shape": "periodic", "period": 100, "cpu_min": 0.0, "cpu_max": 1.0})
    assert isinstance(wave, PeriodicProfile)
    assert wave.cpu(0) == pytest.approx(0.5) and wave.cpu(25) == pytest.approx(1.0)
    spike = parse_profile({"shape": "spike", "at": 10, "duration": 5, "every": 60, "cpu": 2})
    assert isinstance(spike, SpikeProfile)
    assert spike.cpu(12) == 2 and spike.cpu(20) is None and spike.cpu(72) == 2


def test_profile_drives_guest_and_node_load() -> None:
    data = _scenario()
    data["guests"][0]["profile"] = [{"at": 0, "cpu": 0.25}, {"at": 600, "cpu": 1.5}]
    sim = Simulator(data, start_time=1_700_000_000.0, speed=1.0)
    before = sim.node("pve1").cpu
    assert sim.guest(100).cpu == pytest.approx(0.25, abs=0.01)
    sim.advance(600)
    assert sim.guest(100).cpu == pytest.approx(1.5)
    # 4 vCPUs went from 0.25 to 1.5 of their own capacity on a 16-thread node.
    assert sim.node("pve1").cpu - before == pytest.approx(4 * 1.25 / 16, abs=0.01)


@pytest.mark.parametrize("name", ["demo.yaml", "balanced.yaml", "degraded.yaml"])
def test_example_scenarios_load(name: str) -> None:
    sim = Simulator(SCENARIOS / name)
    assert sim.nodes()


def test_demo_scenario_has_the_advertised_hot_spots() -> None:
    sim = Simulator(SCENARIOS / "demo.yaml")
    assert sim.node("pve1").cpu_demand > 1.0
    pve2 = sim.node("pve2")
    assert 0.85 < pve2.mem / pve2.maxmem < 0.95
    assert sim.guest(9000).template
    assert {g.type for g in sim.guests()} == {"qemu", "lxc"}


def test_generate_is_deterministic_and_hot() -> None:
    data = generate(nodes=8, guests=400, seed=3, hot_nodes=2)
    assert data == generate(nodes=8, guests=400, seed=3, hot_nodes=2)
    json.dumps(data)
    sim = Simulator(data)
    loads = {n.name: n.cpu for n in sim.nodes()}
    assert loads["pve01"] > 0.9 and loads["pve02"] > 0.9
    assert max(v for k, v in loads.items() if k not in ("pve01", "pve02")) < 0.6
    assert all(n.mem < n.maxmem * 0.8 for n in sim.nodes())
    assert len(sim.guests()) == 400


def test_maxcpu_follows_pves_vmstatus() -> None:
    # qemu-server vmstatus: sockets x cores capped at the host threads, vcpus overrides;
    # pve-container vmstatus: cores (uncapped) || cpulimit || host threads.
    data = _scenario(guests=[
        {"vmid": 200, "node": "pve1", "sockets": 2, "cores": 16},
        {"vmid": 201, "node": "pve1", "sockets": 2, "cores": 16, "vcpus": 20},
        {"vmid": 202, "node": "pve1", "type": "lxc", "cores": 24},
        {"vmid": 203, "node": "pve1", "type": "lxc", "cpulimit": 1.5},
        {"vmid": 204, "node": "pve1", "type": "lxc", "cpulimit": 0},
        {"vmid": 205, "node": "pve1", "type": "lxc", "cores": 2, "cpulimit": 0.5},
        {"vmid": 206, "node": "pve1", "type": "lxc"},
    ], ha_rules=[])
    sim = Simulator(data)
    assert {g.vmid: g.maxcpu for g in sim.guests()} == {
        200: 16, 201: 20, 202: 24, 203: 1.5, 204: 16, 205: 2, 206: 2,
    }
    listed = {g["vmid"]: g for g in sim.call("GET", "/cluster/resources", type="vm")}
    assert listed[203]["maxcpu"] == 1.5 and listed[204]["maxcpu"] == 16
    assert sim.call("GET", "/nodes/pve1/lxc/203/config")["cpulimit"] == 1.5
    assert "cores" not in sim.call("GET", "/nodes/pve1/lxc/203/config")
    assert sim.call("GET", "/nodes/pve1/qemu/201/config")["vcpus"] == 20
    with pytest.raises(ScenarioError, match="'cpulimit' is modelled for containers only"):
        load_scenario(_scenario(guests=[{"vmid": 300, "node": "pve1", "cpulimit": 2}],
                                ha_rules=[]))


def test_cluster_options_as_pve_parses_datacenter_cfg() -> None:
    # pve-cluster parse_datacenter_config + pve-common parse_property_string: booleans 1/0,
    # numbers stay strings, a bare value has no default key to go to (crs dropped).
    sim = Simulator(_scenario(options={
        "keyboard": "en-us",
        "crs": "ha=static,ha-auto-rebalance=yes,ha-auto-rebalance-threshold=30",
    }))
    options = sim.call("GET", "/cluster/options")
    assert options == {
        "keyboard": "en-us", "description": "", "mac_prefix": "BC:24:11",
        "crs": {"ha": "static", "ha-auto-rebalance": 1, "ha-auto-rebalance-threshold": "30"},
        "allowed-tags": ["prod", "web"],
    }
    sim.set_cluster_options(crs="static")
    assert "crs" not in sim.call("GET", "/cluster/options")
    sim.set_option_crs(ha="dynamic", ha_auto_rebalance=True, ha_auto_rebalance_margin=10)
    assert sim.call("GET", "/cluster/options")["crs"] == {
        "ha": "dynamic", "ha-auto-rebalance": 1, "ha-auto-rebalance-margin": "10"}
    with pytest.raises(ValueError, match="enumeration"):
        sim.set_option_crs(ha="fancy")
    with pytest.raises(ScenarioError, match=r"options\.crs: invalid key"):
        load_scenario(_scenario(options={"crs": {"ha": "static", "ha-rebalance": 1}}))
    with pytest.raises(ScenarioError, match="missing property - 'ha-auto-rebalance'"):
        load_scenario(_scenario(options={"crs": {"ha-auto-rebalance-threshold": 30}}))
    assert "crs" not in Simulator(_scenario(options={"crs": "static"})).cluster.options


def test_cluster_options_without_sys_audit() -> None:
    # Cluster.pm get_options: only console and tag-style, plus allowed-tags, for others.
    sim = Simulator(_scenario(options={"console": "xtermjs", "crs": {"ha": "static"}}))
    sim.set_token_privileges(sys_audit=False)
    answer = sim.api.handle(
        "GET", "/api2/json/cluster/options",
        {"Authorization": f"PVEAPIToken={sim.auth.token_id}={sim.auth.token_value}"}, b"",
    )
    assert json.loads(answer.body)["data"] == {
        "console": "xtermjs", "allowed-tags": ["prod", "web"]}


def test_a_nodes_sustained_load_leaves_the_guests_noise_out() -> None:
    """The benchmark's sustained series (and its lower bound) read the load the guests'
    zero-mean jitter varies around: steady between jitter windows, and the sum of the
    guests' own noise-free loads."""
    data = _scenario()
    for guest in data["guests"]:
        guest["noise"] = 0.2
    sim = Simulator(data, start_time=1_700_000_000.0, speed=1.0)
    cluster = sim.cluster
    t0 = cluster.clock.start
    sampled = {cluster.node_load("pve1", t0 + 10 * k)[0] for k in range(6)}
    steady = {cluster.node_load("pve1", t0 + 10 * k, noise=False)[0] for k in range(6)}
    assert len(sampled) > 1 and len(steady) == 1
    node = cluster.nodes["pve1"]
    threads = node.spec.threads
    expected = node.spec.base_cpu + sum(
        cluster.guest_cpu(g, t0, noise=False) * g.spec.maxcpu(threads) / threads
        for g in cluster.guests.values() if g.node.at(t0) == "pve1")
    assert steady.pop() == pytest.approx(expected)
