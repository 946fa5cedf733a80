"""The markdown report: environment, headline table, goals, details, simulator gaps."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.catalog import BenchScenario
from benchmarks.measure import CPU_MAX, MEMORY_MAX, Metrics


@dataclass
class ScenarioResult:
    scenario: BenchScenario
    size: tuple[int, int]
    lower_bound: dict[str, Any] | None
    metrics: list[Metrics] = field(default_factory=list)
    plot: str | None = None
    note: str = ""

    def of(self, system: str) -> Metrics | None:
        return next((m for m in self.metrics if m.system == system), None)


#: Triggers whose moves are voluntary (the lower bound counts the moves saturation needs).
VOLUNTARY = ("proactive",)


def fmt(value: float | None, digits: int = 0, none: str = "—") -> str:
    if value is None:
        return none
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def lb_text(lb: dict[str, Any] | None) -> str:
    if not lb:
        return "n/a"
    status = lb.get("status")
    if "moves" not in lb:
        return str(status or "n/a").lower()
    if status == "OPTIMAL":
        return str(lb["moves"])
    if status == "RELAXED":
        return f"≥ {lb['moves']}"
    if status == "INFEASIBLE":
        return "infeasible"
    return f"{lb.get('bound', '?')}..{lb['moves']}"


def relief_text(m: Metrics) -> str:
    """The relief on sustained loads, and the sampled one where the noise moved it."""
    text = "never" if m.relief_s is None else fmt(m.relief_s)
    if m.relief_sampled_s != m.relief_s:
        sampled = "never" if m.relief_sampled_s is None else fmt(m.relief_sampled_s)
        text += f" (sampled {sampled})"
    return text


def migrations_text(m: Metrics) -> str:
    text = str(m.issued)
    extra = []
    if len(m.move_reasons) > 1:
        extra.append(", ".join(f"{k} {v}" for k, v in sorted(m.move_reasons.items())))
    if m.failed:
        extra.append(f"{m.failed} failed")
    if m.in_progress:
        extra.append(f"{m.in_progress} running at end")
    return text + (f" ({'; '.join(extra)})" if extra else "")


HEADLINE = ("scenario", "lower bound", "system", "migrations", "ping-pong", "max in flight",
            "saturation node·s", "relief s", "imbalance start→end", "spread end",
            "API calls/cycle", "API calls total", "Redis cmds/cycle", "decide p50/p99 ms")


def headline_rows(results: Sequence[ScenarioResult]) -> list[list[str]]:
    rows = []
    for res in results:
        for i, m in enumerate(res.metrics):
            latency = (f"{fmt(m.latency_p50_ms)}/{fmt(m.latency_p99_ms)}"
                       if not math.isnan(m.latency_p50_ms) else "—")
            row = [res.scenario.name if i == 0 else "",
                   lb_text(res.lower_bound) if i == 0 else "", m.label,
                   migrations_text(m), str(m.ping_pongs), str(m.max_in_flight),
                   fmt(m.saturation_node_s), relief_text(m),
                   f"{fmt(m.imbalance_start, 2)}→{fmt(m.imbalance_end, 2)}",
                   fmt(m.spread_end * 100, 0) + " pts",
                   fmt(m.api_per_cycle, 1), fmt(m.api_calls),
                   fmt(m.redis_per_cycle, 0), latency]
            rows.append(row)
        if not res.metrics:
            rows.append([res.scenario.name, lb_text(res.lower_bound), "—", res.note or "not run",
                         *["—"] * (len(HEADLINE) - 4)])
    return rows


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- goals --------------------------------------------------------------------------------


def goals(results: Sequence[ScenarioResult], engine: list[dict[str, Any]]) -> list[list[str]]:
    ours: list[tuple[ScenarioResult, Metrics]] = []
    for r in results:
        found = r.of("pve-balancer")
        if found is not None:
            ours.append((r, found))
    out: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "**missed**")

    # 1. relief wherever a valid move exists
    fails, checked = [], 0
    for r, m in ours:
        lb = r.lower_bound or {}
        if lb.get("status") not in ("OPTIMAL", "FEASIBLE"):
            continue
        checked += 1
        if m.relief_s is None:
            fails.append(r.scenario.name)
    unproven = [f"{r.scenario.name} (" + (f"still saturated after {m.duration / 60:.0f} min"
                                          if m.relief_s is None else
                                          f"relieved at {m.relief_s:,.0f} s") + ")"
                for r, m in ours if r.lower_bound is not None
                and r.lower_bound.get("status") not in ("OPTIMAL", "FEASIBLE")]
    plural = "s" if checked != 1 else ""
    detail = (f"not relieved by the end: {', '.join(fails)}" if fails else
              f"{checked} scenario{plural} with a proven feasible placement, all relieved")
    if unproven:
        detail += "; without a proven placement: " + ", ".join(unproven)
    out.append(["saturation relieved wherever a valid move exists",
                verdict(not fails if checked else None), detail])
    # 2. mandatory migrations <= LB (the relaxed bound where no exact one) and fewer than ProxLB
    over: list[str] = []
    worse: list[str] = []
    tradeoffs: list[str] = []
    for r, m in ours:
        lb = r.lower_bound or {}
        bound = lb.get("moves") if lb.get("status") == "OPTIMAL" else lb.get("relaxed")
        mandatory = m.issued - sum(m.move_reasons.get(t, 0) for t in VOLUNTARY)
        if bound is not None and mandatory > bound:
            why = ", ".join(f"{k} {v}" for k, v in sorted(m.move_reasons.items()))
            over.append(f"{r.scenario.name} ({mandatory} vs bound {bound}"
                        + (f"; by trigger: {why}" if why else "") + ")")
        for other in r.metrics:
            if not other.system.startswith("proxlb"):
                continue
            theirs = other.issued
            if m.issued == 0 or m.issued < theirs:
                continue
            name = f"{r.scenario.name} vs {other.label} ({m.issued} vs {theirs})"
            if other.saturation_node_s > m.saturation_node_s + 1 or (
                    other.relief_s is None and m.relief_s is not None):
                # Fewer migrations that leave nodes saturated are no cheaper success.
                tradeoffs.append(f"{name}, but it left {other.saturation_node_s:,.0f} node·s "
                                 f"saturated (pve-balancer {m.saturation_node_s:,.0f})")
            else:
                worse.append(name)
    out.append(["mandatory migrations ≤ lower bound (voluntary ones by trigger in the table)",
                verdict(not over), "; ".join(over) or "every scenario with a bound"])
    out.append(["fewer migrations than ProxLB (for no more saturation)", verdict(not worse),
                "; ".join(worse) or "fewer (or both zero) wherever ProxLB did as well"])
    if tradeoffs:
        out.append(["... where ProxLB moved less", "—", "; ".join(tradeoffs)])
    pp = [f"{r.scenario.name} ({m.ping_pongs})" for r, m in ours if m.ping_pongs]
    out.append(["zero ping-pongs", verdict(not pp), ", ".join(pp) or "none in any run"])
    quiet = [(r, m) for r, m in ours if r.scenario.name in ("balanced", "cpu-spike")]
    noisy = [f"{r.scenario.name} ({m.issued})" for r, m in quiet if m.issued]
    out.append(["zero moves on balanced and cpu-spike", verdict(not noisy if quiet else None),
                ", ".join(noisy) or (", ".join(r.scenario.name for r, _ in quiet) + ": 0"
                                     if quiet else "not run")])
    flight = [f"{r.scenario.name} ({m.max_in_flight})" for r, m in ours if m.max_in_flight > 1]
    out.append(["at most one migration in flight", verdict(not flight),
                ", ".join(flight) or f"max {max((m.max_in_flight for _, m in ours), default=0)}"])
    api = [(r.scenario.name, m.api_per_cycle) for r, m in ours if not math.isnan(m.api_per_cycle)]
    bad = [f"{n} ({v:.2f})" for n, v in api if v > 3]
    out.append(["≤ 3 API calls per cycle at any size", verdict(not bad if api else None),
                ", ".join(bad) or "max " + (f"{max(v for _, v in api):.2f}" if api else "—")
                + " (production timings, see notes)"])
    sizes: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in engine:
        sizes.setdefault((e["nodes"], e["guests"]), []).append(e)
    for (nodes, guests), cases in sizes.items():
        goal = cases[0]["goal_ms"]
        worst = max(cases, key=lambda e: e["p99_ms"])
        detail = "; ".join(
            f"{e['name'].split(', ', 1)[-1]}: p99 {e['p99_ms']:.1f} ms"
            + (" (over)" if e["p99_ms"] > goal else "") for e in cases)
        out.append([f"engine decision p99 < {goal:.0f} ms at {nodes} nodes / {guests:,} VMs, "
                    "every case", verdict(worst["p99_ms"] <= goal), detail])
    return out


# --- whole report -------------------------------------------------------------------------


def render(results: Sequence[ScenarioResult], engine: list[dict[str, Any]],
           env: dict[str, str], settings: dict[str, Any]) -> str:
    parts = [f"# pve-balancer benchmarks ({settings['mode']})", "",
             "Generated by `python -m benchmarks` (`make bench`; `--quick` for the short set). "
             "Benchmarks print figures; they never fail on a time.", "",
             "## Machine and versions", "",
             table(("what", "value"), env.items()), "",
             "## Settings", ""]
    parts += [f"- {line}" for line in settings["lines"]]
    parts += ["", "## Headline", "", table(HEADLINE, headline_rows(results)), ""]
    parts += ["Thresholds for every system's figures: cpu_max "
              f"{CPU_MAX:.0%}, memory_max {MEMORY_MAX:.0%} (pve-balancer's defaults; "
              "ProxLB acts at its own 75% / balanciness 10).", ""]
    parts += ["## Goals (pve-balancer)", "", table(("goal", "verdict", "detail"),
                                                   goals(results, engine)), ""]
    parts += ["## Engine decision time (`benchmarks/engine_bench.py`, one core)", "",
              table(("cluster", "p50 ms", "p99 ms", "goal ms", "first line of the decision"),
                    [[e["name"], f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}",
                      f"{e['goal_ms']:.0f}", e["headline"][:90]] for e in engine]), ""]
    parts += ["## Per scenario", ""]
    for res in results:
        parts += details(res)
    parts += ["## API calls by endpoint (all scenarios)", "", endpoints(results), ""]
    parts += ["## Non-2xx answers (simulator gaps and PVE refusals)", ""]
    gaps = simulator_gaps(results)
    parts += gaps or ["None: every call of every system got a 2xx answer from the simulator."]
    parts += ["", "## Notes", ""] + [f"- {n}" for n in settings["notes"]]
    return "\n".join(parts) + "\n"


def details(res: ScenarioResult) -> list[str]:
    sc = res.scenario
    out = [f"### {sc.name}", "", f"{sc.summary} ({res.size[0]} nodes, {res.size[1]:,} guests).",
           ""]
    lb = res.lower_bound
    if lb:
        plan = ", ".join(lb.get("plan", [])[:6])
        more = len(lb.get("plan", [])) - 6
        out.append(f"- Lower bound: {lb_text(lb)} ({lb.get('status', '?')}, "
                   f"{lb.get('variables', '?')} placement variables, {lb.get('seconds', '?')} s)"
                   + (f": {plan}" + (f" (+{more} more)" if more > 0 else "") if plan else ""))
    elif res.note:
        out.append(f"- {res.note}")
    if res.plot:
        out.append(f"- Plot: [{res.plot}]({res.plot})")
    for m in res.metrics:
        moves = [e for e in m.events if e.kind in ("qmigrate", "vzmigrate")]
        listed = ", ".join(f"{e.vmid} {e.source}→{e.target}@{e.start:.0f}s"
                           + ("" if e.ok else " FAILED" if e.ok is False else " (running)")
                           for e in moves[:8])
        line = (f"- {m.label}: {m.cycles} cycles, {m.api_calls} API calls"
                f"{', moves: ' + listed if listed else ''}"
                f"{f' (+{len(moves) - 8} more)' if len(moves) > 8 else ''}; "
                f"saturation cpu {fmt(m.saturation_cpu_node_s)} / memory "
                f"{fmt(m.saturation_mem_node_s)} node·s")
        if m.system == "pve-balancer" and m.cycles:
            line += (f"; {m.api_per_cycle_measured:.2f} calls/cycle as measured at this speed"
                     f"; {m.deciding_cycles} cycles decided (p50 {fmt(m.latency_p50_ms)} ms), "
                     f"the others skipped (all cycles p50 {fmt(m.all_cycles_p50_ms)} ms)")
            if m.redis_top:
                line += "; top Redis commands: " + ", ".join(
                    f"{k} {v}" for k, v in list(m.redis_top.items())[:5])
            if m.skipped:
                line += "; outcomes: " + ", ".join(f"{k} {v:.0f}" for k, v in m.skipped.items())
        out.append(line)
        for note in m.notes:
            out.append(f"  - {note}")
    out.append("")
    return out


def simulator_gaps(results: Sequence[ScenarioResult]) -> list[str]:
    seen: dict[str, dict[str, int]] = {}
    for res in results:
        for m in res.metrics:
            for call, n in m.api_errors.items():
                seen.setdefault(call, {})
                seen[call][f"{m.label} / {res.scenario.name}"] = n
    return [f"- `{call}`: " + ", ".join(f"{who}: {n}" for who, n in where.items())
            for call, where in sorted(seen.items())]


def endpoints(results: Sequence[ScenarioResult]) -> str:
    """Calls per endpoint and system, summed over scenarios: which reads each one needs."""
    labels: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for res in results:
        for m in res.metrics:
            if m.label not in labels:
                labels.append(m.label)
            for call, n in m.api_by_endpoint.items():
                counts.setdefault(call, {})
                counts[call][m.label] = counts[call].get(m.label, 0) + n
    rows = [[f"`{call}`", *(fmt(by.get(label)) if by.get(label) else "" for label in labels)]
            for call, by in sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))]
    return table(("endpoint", *labels), rows)
