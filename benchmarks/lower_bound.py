"""Lower bound: the fewest live migrations that bring every node under both thresholds.

A 0/1 program solved exactly by OR-Tools CP-SAT (installed in the benchmark venv with
ProxLB's solver package): each guest ends on one node; the objective counts guests not on
their current node; every node's CPU and memory after the moves stay at or below cpu_max and
memory_max. It respects the rules every system must respect here:

* only running QEMU VMs move (containers would restart; templates, locked guests and VMs
  with PCI passthrough cannot live-migrate);
* guests in an HA node-affinity or positive resource-affinity rule, or tagged to be ignored,
  stay put (HA would move them back);
* the busiest VM of a node above `cpu_max` stays (pve-balancer's rule 1 frees room for it,
  so no valid plan moves it);
* `plb_pin_<node>` tags restrict a guest's nodes; HA negative resource-affinity rules and
  `plb_anti_affinity_<group>` tags keep members on distinct nodes.

`relaxed()` is a weaker bound that needs no solver (used where CP-SAT is out of reach).

It is a bound, not a plan: it ignores the order of moves and the memory a live migration
holds on both nodes while it runs, and it uses the guests' sustained load at one instant
(read after the first minute, the simulator's zero-mean noise left out: a bound read from one
noise sample moved between 18 and 20 on big from run to run, and no balancer should be judged
on a jitter). It is "optimal" only when CP-SAT proves it.

`extract()` runs in the project venv (it reads the simulator's model); `solve()` runs in the
benchmark venv: `python -m benchmarks.lower_bound problem.json answer.json`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
IGNORE_TAGS = ("plb_ignore", "pve-balancer-ignore")


def extract(data: dict[str, Any], at: float, cpu_max: float = 0.8,
            memory_max: float = 0.8) -> dict[str, Any]:
    """The placement problem at `at` simulated seconds after the scenario starts."""
    from pvesim import Simulator

    sim = Simulator(data, speed=1.0, seed=0)
    cluster, scenario = sim.cluster, sim.scenario
    t = cluster.clock.start + at
    pinned_by_rule: set[int] = set()
    anti: list[list[int]] = []
    for rule in scenario.ha_rules:
        if rule.disable:
            continue
        vmids = [int(r.split(":")[-1]) for r in rule.resources]
        if rule.type == "node-affinity" or rule.affinity == "positive":
            pinned_by_rule.update(vmids)
        elif rule.affinity == "negative":
            anti.append(vmids)
    tag_groups: dict[str, list[int]] = defaultdict(list)
    guests = []
    for vmid, g in sorted(cluster.guests.items()):
        spec = g.spec
        if not cluster.guest_running(g, t):
            continue
        tags = [tag.lower() for tag in spec.tags]
        for tag in tags:
            if tag.startswith("plb_anti_affinity_"):
                tag_groups[tag].append(vmid)
        pins = sorted(tag.removeprefix("plb_pin_") for tag in tags if tag.startswith("plb_pin_"))
        movable = (spec.type == "qemu" and not spec.template and spec.lock is None
                   and not spec.hostpci and vmid not in pinned_by_rule
                   and not any(tag.startswith(IGNORE_TAGS) for tag in tags))
        guests.append({"vmid": vmid, "type": spec.type, "node": g.node.at(t),
                       "cpu": cluster.guest_cpu(g, t, noise=False), "cpus": spec.cpus,
                       "mem_mib": cluster.guest_mem(g, t, noise=False)[1] // MIB,
                       "movable": movable,
                       "pins": pins or None})
    nodes = [{"name": name, "threads": n.spec.threads, "memory_mib": n.spec.memory // MIB,
              "base_cores": n.spec.base_cpu * n.spec.threads,
              "base_mem_mib": n.spec.base_mem // MIB}
             for name, n in cluster.nodes.items() if n.online.at(t)]
    busiest = _busiest_on_hot_nodes(nodes, guests, cpu_max)
    for entry in guests:
        entry["movable"] = entry["movable"] and entry["vmid"] not in busiest
    sim.close()
    return {"at": at, "cpu_max": cpu_max, "memory_max": memory_max, "nodes": nodes,
            "guests": guests, "anti_affinity": anti + [v for v in tag_groups.values()
                                                        if len(v) > 1]}


def guest_cores(g: dict[str, Any], node: dict[str, Any]) -> float:
    """Host threads a guest uses on `node` (its vCPUs beyond the node's threads add nothing)."""
    return float(g["cpu"] * min(g["cpus"], node["threads"]))


def _by_node(guests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in guests:
        per_node[g["node"]].append(g)
    return per_node


def _busiest_on_hot_nodes(nodes: list[dict[str, Any]], guests: list[dict[str, Any]],
                          cpu_max: float) -> set[int]:
    """On each node above cpu_max, the VM using most host threads (ties: more memory, lower
    vmid), as `balancer.engine.strategies.busiest_vm` picks it."""
    chosen = set()
    per_node = _by_node(guests)
    for n in nodes:
        mine = per_node[n["name"]]
        if n["base_cores"] + sum(guest_cores(g, n) for g in mine) <= cpu_max * n["threads"]:
            continue
        vms = [g for g in mine if g["type"] == "qemu"]
        if vms:
            busiest = min(vms, key=lambda g: (-guest_cores(g, n), -g["mem_mib"], g["vmid"]))
            chosen.add(busiest["vmid"])
    return chosen


def relaxed(problem: dict[str, Any]) -> dict[str, Any]:
    """A cheaper, weaker bound for any size: per node above a threshold, the fewest of its
    movable guests whose CPU (and, separately, memory) covers the excess, largest first;
    summed over nodes. Every move leaves exactly one node, so no plan can do with fewer.
    It ignores where the guests go (targets' room, anti-affinity)."""
    per_node = _by_node(problem["guests"])
    total, short = 0, []
    for n in problem["nodes"]:
        guests = per_node[n["name"]]
        excess = {
            "cpu": n["base_cores"] + sum(guest_cores(g, n) for g in guests)
            - problem["cpu_max"] * n["threads"],
            "mem": n["base_mem_mib"] + sum(g["mem_mib"] for g in guests)
            - problem["memory_max"] * n["memory_mib"],
        }
        movable = [g for g in guests if g["movable"]
                   and (g["pins"] is None or set(g["pins"]) - {n["name"]})]
        need = 0
        for what, over in excess.items():
            if over <= 0:
                continue
            sizes = sorted((guest_cores(g, n) if what == "cpu" else g["mem_mib"]
                            for g in movable),
                           reverse=True)
            freed, count = 0.0, 0
            for size in sizes:
                if freed >= over:
                    break
                freed, count = freed + size, count + 1
            if freed < over:
                short.append(n["name"])
            need = max(need, count)
        total += need
    return {"status": "INFEASIBLE" if short else "RELAXED", "moves": total,
            "short": sorted(set(short))}


def solve(problem: dict[str, Any], time_limit: float = 60.0) -> dict[str, Any]:
    from ortools.sat.python import cp_model  # benchmark venv only

    started = time.monotonic()
    nodes = problem["nodes"]
    names = [n["name"] for n in nodes]
    index = {name: i for i, name in enumerate(names)}
    model = cp_model.CpModel()
    cpu_terms: list[list[Any]] = [[] for _ in nodes]
    mem_terms: list[list[Any]] = [[] for _ in nodes]
    cpu_fixed = [round(n["base_cores"] * 1000) for n in nodes]
    mem_fixed = [n["base_mem_mib"] for n in nodes]
    where: dict[int, dict[int, Any]] = {}
    moved = []

    def cores(g: dict[str, Any], node: dict[str, Any]) -> int:
        return round(guest_cores(g, node) * 1000)

    for g in problem["guests"]:
        home = index.get(g["node"])
        if home is None:
            continue
        allowed = [i for i, name in enumerate(names)
                   if g["pins"] is None or name in g["pins"] or i == home]
        if not g["movable"] or allowed == [home]:
            cpu_fixed[home] += cores(g, nodes[home])
            mem_fixed[home] += g["mem_mib"]
            where[g["vmid"]] = {home: 1}
            continue
        x = {i: model.NewBoolVar(f"x{g['vmid']}_{i}") for i in allowed}
        model.AddExactlyOne(x.values())
        for i, var in x.items():
            cpu_terms[i].append(cores(g, nodes[i]) * var)
            mem_terms[i].append(g["mem_mib"] * var)
        where[g["vmid"]] = x
        moved.append(1 - x[home])
    for i, n in enumerate(nodes):
        model.Add(sum(cpu_terms[i]) + cpu_fixed[i]
                  <= int(problem["cpu_max"] * n["threads"] * 1000))
        model.Add(sum(mem_terms[i]) + mem_fixed[i]
                  <= int(problem["memory_max"] * n["memory_mib"]))
    for group in problem["anti_affinity"]:
        members = [where[v] for v in group if v in where]
        for i in range(len(nodes)):
            on_node = [m[i] for m in members if i in m]
            initially = sum(1 for v in group for g in problem["guests"]
                            if g["vmid"] == v and g["node"] == names[i])
            if len(on_node) > 1:
                model.Add(sum(on_node) <= max(1, initially))
    model.Minimize(sum(moved))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 2
    status = solver.Solve(model)
    answer: dict[str, Any] = {"status": solver.StatusName(status),
                              "seconds": round(time.monotonic() - started, 2),
                              "variables": sum(len(v) for v in where.values() if len(v) > 1)}
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        answer["moves"] = round(solver.ObjectiveValue())
        answer["bound"] = round(solver.BestObjectiveBound())
        plan = []
        for vmid, x in where.items():
            for i, var in x.items():
                if not isinstance(var, int) and solver.Value(var) and len(x) > 1:
                    home = next(g["node"] for g in problem["guests"] if g["vmid"] == vmid)
                    if names[i] != home:
                        plan.append(f"{vmid}: {home} -> {names[i]}")
        answer["plan"] = plan
    return answer


def main() -> None:
    problem = json.loads(Path(sys.argv[1]).read_text())
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    Path(sys.argv[2]).write_text(json.dumps(solve(problem, limit)))


if __name__ == "__main__":
    main()
