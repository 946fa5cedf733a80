"""Good neighbour in real clusters (issue 9): PVE's HA auto-rebalance, HA node maintenance and
ProxLB's tags, each against the simulator through the same code path evaluate uses (`plan`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from balancer.cli import EXIT_OK, main
from balancer.runtime import evaluate
from tests.runtime.scenarios import cluster, vm
from tests.support.celery_worker import write_config
from tests.support.steps import StepDispatcher, runtime_for

Plan = Callable[..., dict[str, Any]]

#: pve1 (16 threads) at ~0.87: 500 is the busiest and stays; 501 (4 GiB) and 502 (8 GiB) are
#: each enough on their own, and 501 copies less memory, so 501 is the natural choice.
HOT = [vm(500, "pve1", 8, 0.9, 16), vm(501, "pve1", 4, 0.8, 4), vm(502, "pve1", 4, 0.8, 8),
       vm(510, "pve2", 2, 0.4, 4), vm(520, "pve3", 2, 0.2, 4)]


@pytest.fixture
def plan(pvesim_factory: Callable[..., Any], tmp_path: Path, redis_url: str,
         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Plan:
    """plan(scenario, command="plan", **balancing) -> parsed `plan --json` (or check text)."""

    def run(scenario: dict[str, Any], command: str = "plan", **balancing: Any) -> Any:
        running = pvesim_factory(scenario)
        path = tmp_path / f"b{len(list(tmp_path.iterdir()))}.yaml"
        write_config(path, running.host_port, running.user, running.token_name, redis_url,
                     **balancing)
        monkeypatch.setenv("PVE_TOKEN_VALUE", running.token_value)
        args = ["--config", str(path), command] + (["--json"] if command == "plan" else [])
        assert main(args) == EXIT_OK
        out = capsys.readouterr().out
        return json.loads(out) if command == "plan" else out

    return run


def with_ha(guests: list[dict[str, Any]], *vmids: int) -> list[dict[str, Any]]:
    return [{**g, "ha": "started"} if g["vmid"] in vmids else g for g in guests]


AUTO_REBALANCE = {"options": {"crs": {"ha": "static", "ha-auto-rebalance": 1}}}


def test_without_pve_auto_rebalance_ha_guests_are_ours(plan: Plan) -> None:
    assert plan(cluster(with_ha(HOT, 501)))["vmid"] == 501


def test_pve_auto_rebalance_on_leaves_ha_guests_to_pve(plan: Plan) -> None:
    decision = plan(cluster(with_ha(HOT, 501), **AUTO_REBALANCE))
    assert decision["vmid"] == 502
    assert any("vm 501" in line and "auto-rebalance" in line
               for line in decision["explanation"]), decision["explanation"]


def test_leave_ha_to_pve_false_hands_ha_guests_back(plan: Plan) -> None:
    decision = plan(cluster(with_ha(HOT, 501), **AUTO_REBALANCE), leave_ha_to_pve=False)
    assert decision["vmid"] == 501


def test_check_says_what_happens_to_ha_guests(plan: Plan) -> None:
    out = plan(cluster(with_ha(HOT, 501), **AUTO_REBALANCE), command="check")
    assert "PVE HA auto-rebalance: on" in out
    assert "leaving 1 HA-managed guests to PVE's auto-rebalance" in out


def test_node_in_maintenance_is_never_a_target(plan: Plan) -> None:
    scenario = cluster(HOT)
    scenario["nodes"][2]["hastate"] = "maintenance"          # pve3: the least loaded node
    decision = plan(scenario)
    assert (decision["vmid"], decision["target"]) == (501, "pve2")


def test_node_in_maintenance_is_never_a_source(plan: Plan) -> None:
    scenario = cluster(HOT)
    scenario["nodes"][0]["hastate"] = "maintenance"          # pve1: the hot node
    decision = plan(scenario)
    assert decision["action"] == "none"
    assert any("pve1" in line and "maintenance" in line for line in decision["explanation"])


def tagged(guests: list[dict[str, Any]], tags: dict[int, list[str]]) -> list[dict[str, Any]]:
    return [{**g, "tags": tags[g["vmid"]]} if g["vmid"] in tags else g for g in guests]


def test_proxlb_ignore_and_affinity_tags_keep_guests_still(plan: Plan) -> None:
    guests = tagged(HOT, {501: ["plb_ignore_vm"], 502: ["plb_affinity_web"]})
    decision = plan(cluster(guests))
    assert decision["action"] == "none"
    text = "\n".join(decision["explanation"])
    assert "vm 501" in text and "vm 502" in text


def test_proxlb_pin_limits_targets_to_the_pinned_nodes(plan: Plan) -> None:
    guests = tagged(HOT, {501: ["plb_pin_pve1", "plb_pin_pve2"]})
    decision = plan(cluster(guests))
    # pve3 is emptier, but the pins allow only pve1 and pve2.
    assert (decision["vmid"], decision["target"]) == (501, "pve2")


def test_proxlb_anti_affinity_keeps_group_members_apart(plan: Plan) -> None:
    guests = tagged(HOT, {501: ["plb_anti_affinity_db"], 520: ["plb_anti_affinity_db"]})
    decision = plan(cluster(guests))
    assert (decision["vmid"], decision["target"]) == (501, "pve2")


def test_proxlb_tags_can_be_turned_off(plan: Plan) -> None:
    guests = tagged(HOT, {501: ["plb_ignore_vm"]})
    assert plan(cluster(guests), proxlb_tags=False)["vmid"] == 501


def test_check_lists_the_proxlb_tags_found(plan: Plan) -> None:
    guests = tagged(HOT, {501: ["plb_pin_pve1"], 502: ["plb_ignore_x"],
                          510: ["plb_anti_affinity_db"], 520: ["plb_anti_affinity_db"]})
    out = plan(cluster(guests), command="check")
    assert "ProxLB tags: 1 plb_ignore, 1 plb_pin, 0 plb_affinity, 1 plb_anti_affinity groups;" \
        " honoured" in out


def test_evaluate_says_once_that_pve_auto_rebalance_is_on(
    pvesim_factory: Callable[..., Any], redis_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    running = pvesim_factory(cluster(with_ha(HOT, 501), **AUTO_REBALANCE))
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()
    with caplog.at_level(logging.INFO, logger="balancer.evaluate"):
        for _ in range(3):
            running.sim.advance(10)
            evaluate(rt, dispatch)
    said = [r for r in caplog.records if "auto-rebalance is on" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING
    assert "leaving HA-managed guests to PVE" in said[0].getMessage()
