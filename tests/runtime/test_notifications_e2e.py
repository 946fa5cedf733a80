"""Issue 17, notifications end to end: a real worker and beat on Redis, the simulator over
HTTPS, and a local HTTP receiver as the far end of an Apprise `json://` URL. A node stuck
saturated, a pause and a resume each arrive once; the URL's secret appears nowhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.runtime.scenarios import CPU_HOT
from tests.support.pvesim_server import wait_for_cycles
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SECRET = "n0tify-t0ken-5ecret"


def test_stuck_node_pause_and_resume_reach_the_receiver_once_each(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
    receiver: Receiver,
) -> None:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    url = f"json://hook:{SECRET}@127.0.0.1:{receiver.port}/hook"
    # pve1 is CPU-hot and every other node is excluded: saturated, with no valid move.
    deployment = deployment_factory(
        running, exclude_nodes=["pve2", "pve3"],
        sections={"notifications": {"urls": [url], "stuck_after_seconds": 0}})
    deployment.start_worker()
    deployment.start_beat()

    wait_until(lambda: any("pve1 saturated" in t for t in receiver.titles()), timeout=90,
               what="the stuck-node notification")
    assert deployment.cli("pause", "--reason", "change freeze").returncode == 0
    wait_until(lambda: "pve-balancer paused" in receiver.titles(), timeout=60,
               what="the pause notification")
    assert deployment.cli("resume").returncode == 0
    wait_until(lambda: "pve-balancer resumed" in receiver.titles(), timeout=60,
               what="the resume notification")
    wait_for_cycles(running.sim, 10)

    titles = receiver.titles()
    assert titles.count("pve-balancer: pve1 saturated, no valid move") == 1, "throttled"
    paused = next(r["json"] for r in receiver.received
                  if r["json"]["title"] == "pve-balancer paused")
    assert "change freeze" in paused["message"]
    assert all(r["path"] == "/hook" for r in receiver.received)
    assert running.sim.migration_log == []

    shown = deployment.cli("check-config").stdout
    assert "urls:\n  - '***'" in shown or "- '***'" in shown
    assert SECRET not in shown
    assert SECRET not in deployment.logs()
