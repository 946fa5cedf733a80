"""The whole decision: shape, sentences, summaries, bounded explanations."""

import json
import re

import pytest

from balancer.engine import Decision, Rule, TargetVerdict, decide
from balancer.engine.explain import MAX_CANDIDATE_LINES

from .builders import ct, engine_input, node, resource_affinity, snapshot, vm


def fit_error_cluster() -> Decision:
    """vm 104 on hot pve1; of six other nodes 3 host anti-affinity partners, 2 are busy,
    1 is in maintenance."""
    nodes = [node("pve1", cpu=0.95)] + [node(f"pve{i}", cpu=0.2) for i in (2, 3, 4)] + [
        node("pve5", cpu=0.7), node("pve6", cpu=0.72), node("pve7", hastate="maintenance")]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(104, cpu=1.0, maxcpu=4),
              vm(202, node="pve2"), vm(203, node="pve3"), vm(204, node="pve4")]
    apart = (resource_affinity("apart", 104, 202, 203, 204, positive=False),)
    return decide(engine_input(snapshot(nodes, guests, resource_affinity=apart)))


def test_fit_error_summary_keeps_every_target_verdict() -> None:
    decision = fit_error_cluster()
    assert decision.move is None
    (v104,) = [c for c in decision.candidates if c.vmid == 104]
    assert v104.summary() == ("vm 104: 0/6 targets valid: 3 anti_affinity, 2 cpu_headroom, "
                              "1 maintenance")
    assert v104.summary() in decision.explanation
    by_node = {t.node: t.rejection.rule for t in v104.targets if t.rejection}
    assert by_node == {"pve2": Rule.ANTI_AFFINITY, "pve3": Rule.ANTI_AFFINITY,
                       "pve4": Rule.ANTI_AFFINITY, "pve5": Rule.CPU_HEADROOM,
                       "pve6": Rule.CPU_HEADROOM, "pve7": Rule.MAINTENANCE}


def test_none_decision_to_dict_is_json_safe_with_null_move_fields() -> None:
    data = fit_error_cluster().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["action"] == "none"
    assert (data["vmid"], data["source"], data["target"], data["reason"]) == (None,) * 4
    assert data["projected"] is None
    assert data["explanation"][0].startswith("no migration: cpu: no valid move off pve1")


def test_migrate_decision_to_dict_carries_projection() -> None:
    nodes = [node("pve1", cpu=0.9), node("pve2", cpu=0.2)]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=4)]
    decision = decide(engine_input(snapshot(nodes, guests)))
    data = decision.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert (data["action"], data["vmid"], data["source"], data["target"], data["reason"]) == (
        "migrate", 102, "pve1", "pve2", "cpu")
    assert data["projected"]["source"]["before"]["cpu"] == pytest.approx(0.9)
    assert data["projected"]["source"]["after"]["cpu"] == pytest.approx(0.9 - 4 / 32)
    assert data["projected"]["target"]["after"]["cpu"] == pytest.approx(0.2 + 4 / 32)
    assert decision.explanation[0] == (
        "migrate vm 102 (vm102) pve1 -> pve2 [cpu]: pve1 cpu 0.90->0.78 mem 0.25->0.23, "
        "pve2 cpu 0.20->0.33 mem 0.25->0.27")


def test_not_quorate_cluster_decides_nothing() -> None:
    nodes = [node("pve1", cpu=0.95), node("pve2", cpu=0.1)]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=4)]
    decision = decide(engine_input(snapshot(nodes, guests, quorate=False)))
    assert decision.move is None
    assert decision.explanation[0] == (
        "no migration: cluster is not quorate; PVE would refuse migrations")


def test_no_online_node_decides_nothing() -> None:
    decision = decide(engine_input(snapshot([node("pve1", online=False)])))
    assert decision.explanation[0] == "no migration: no node is online"


def test_decide_is_deterministic_and_leaves_its_input_alone() -> None:
    nodes = [node("pve1", cpu=0.9, mem_gib=230, maxmem_gib=256), node("pve2"), node("pve3")]
    guests = [vm(100 + i, cpu=0.3) for i in range(12)]
    inp = engine_input(snapshot(nodes, guests), blocked={105: "cooldown"}, seed=3)
    before = (inp.snapshot, dict(inp.cpu), dict(inp.blocked))
    first, second = decide(inp), decide(inp)
    assert first.to_dict() == second.to_dict()
    assert first.candidates == second.candidates
    assert (inp.snapshot, dict(inp.cpu), dict(inp.blocked)) == before


def test_explanation_lines_are_capped_but_verdicts_are_all_kept() -> None:
    # 200 small VMs, each blocked by anti-affinity with a partner on the only target.
    nodes = [node("pve1", cpu=0.95), node("pve2", cpu=0.1)]
    guests = [vm(101, cpu=1.0, maxcpu=16)]
    rules = []
    for i in range(200):
        guests += [vm(1000 + i, cpu=0.5, maxcpu=1), vm(5000 + i, node="pve2", cpu=0.0)]
        rules.append(resource_affinity(f"r{i}", 1000 + i, 5000 + i, positive=False))
    decision = decide(engine_input(snapshot(nodes, guests, resource_affinity=tuple(rules))))
    assert decision.move is None
    evaluated = [c for c in decision.candidates if c.eligible]
    assert len(evaluated) == 200
    assert len(decision.explanation) < MAX_CANDIDATE_LINES + 10
    # 201 verdicts (the busiest VM plus 200 evaluated), 30 of them shown as lines.
    assert "171 more candidate verdicts not shown (kept in Decision.candidates)" in \
        decision.explanation[-1]


def test_a_guest_too_big_for_every_target_still_gets_per_target_verdicts() -> None:
    nodes = [node("pve1", cpu=0.95), node("pve2", cpu=0.5), node("pve3", cpu=0.6),
             node("pve4", cpu=0.1, hastate="maintenance")]
    guests = [vm(101, cpu=1.0, maxcpu=16), vm(102, cpu=1.0, maxcpu=12)]
    decision = decide(engine_input(snapshot(nodes, guests)))
    (v102,) = [c for c in decision.candidates if c.vmid == 102]
    assert v102.target is None
    assert v102.targets == (
        TargetVerdict("pve4", v102.targets[0].rejection),
        TargetVerdict("pve2", v102.targets[1].rejection),
        TargetVerdict("pve3", v102.targets[2].rejection),
    )
    assert [t.rejection.rule for t in v102.targets if t.rejection] == [
        Rule.MAINTENANCE, Rule.CPU_HEADROOM, Rule.CPU_HEADROOM]


def test_the_not_candidates_counts_add_up_to_the_guests_they_count() -> None:
    """Issue 17: a guest with several reasons is counted once (by its first reason); all its
    reasons are in its own line."""
    snap = snapshot([node("pve1", mem_gib=240), node("pve2")],
                    [ct(100, status="stopped"), ct(101), vm(102, status="stopped"),
                     vm(103, lock="backup", status="stopped"), vm(104, mem_gib=8)])
    d = decide(engine_input(snap))
    [line] = [x for x in d.explanation if "guests are not candidates" in x]
    match = re.search(r"(\d+)/(\d+) guests are not candidates \((.*)\)", line)
    assert match is not None, line
    counted = sum(int(part.split()[0]) for part in match[3].split(", "))
    assert counted == int(match[1]) == 4, line
    assert "vm 103 on pve1: not a candidate: not_running: vm 103 is stopped, not running; " \
           "locked: vm 103 is locked (backup)" in d.explanation
