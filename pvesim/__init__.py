"""pvesim: a realistic fake of the Proxmox VE 9 REST API for tests, demos and benchmarks.

    from pvesim import Simulator, load_scenario
    sim = Simulator(load_scenario("config/scenarios/demo.yaml"), speed=10.0, seed=0)
    server = sim.serve(host="127.0.0.1", port=0)   # HTTPS, self-signed

The real proxmoxer client connects to `server.host_port` with the scenario's API token and
`verify_ssl=False`.
"""

from pvesim.cluster import MigrationRecord, RequestRecord
from pvesim.errors import ApiError
from pvesim.scenario import Scenario, ScenarioError, generate, load_scenario
from pvesim.server import SimServer
from pvesim.simulator import AuthInfo, GuestInfo, NodeInfo, Simulator, TaskInfo

__all__ = [
    "ApiError",
    "AuthInfo",
    "GuestInfo",
    "MigrationRecord",
    "NodeInfo",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "SimServer",
    "Simulator",
    "TaskInfo",
    "generate",
    "load_scenario",
]
