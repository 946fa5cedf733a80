"""`python -m benchmarks` (what `make bench` runs): every scenario, every system, one report.

    python -m benchmarks                 # all scenarios (~25 min on 2 cores)
    python -m benchmarks --quick         # the short set, shorter runs (a few minutes)
    python -m benchmarks --scenario cpu-hot --scenario affinity
    python -m benchmarks --export-scenario big > big.json   # simulator-format scenario

Writes `benchmarks/results/<full|quick|custom>/`: `report.md` (tables), `results.json` (all
figures) and one `<scenario>.png` per scenario. Logs of every process go to
`benchmarks/.work/` (gitignored). Ctrl-C stops everything this started.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import benchvenv
from benchmarks.catalog import SCENARIOS, BenchScenario, get
from benchmarks.lower_bound import extract, relaxed
from benchmarks.measure import CPU_MAX, MEMORY_MAX, Metrics, MoveEvent, measure
from benchmarks.procs import REPO, install_handlers, stop_all
from benchmarks.report import ScenarioResult, fmt, lb_text, render
from benchmarks.run import run_one
from benchmarks.systems import PROD_COOLDOWN, PROD_EMA_WINDOW, PROD_INTERVAL, ProxLB, PveBalancer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / ".work"
QUICK = ("balanced", "cpu-hot", "cpu-spike", "mem-hot", "affinity")
#: ProxLB reads 1-h RRD per guest (3 calls per guest per pass); on these the simulator's
#: ~50 ms per RRD answer makes one pass last minutes of real time, i.e. hours simulated.
MAX_SPEED = 50.0  # interval_seconds must stay >= 0.1 s (5 s / 50)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK)}, with shorter runs")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        help="run only this scenario (repeatable): "
                             + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--systems", default="pve-balancer,proxlb-memory,proxlb-cpu",
                        help="comma-separated subset of pve-balancer,proxlb-memory,proxlb-cpu")
    parser.add_argument("--speed", type=float, default=30.0,
                        help="simulated seconds per real second (default 30; pve-balancer's "
                             "timings are divided by it)")
    parser.add_argument("--proxlb-interval", type=int, default=5, metavar="MINUTES",
                        help="ProxLB daemon schedule in simulated minutes (default 5)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="override every scenario's simulated duration")
    parser.add_argument("--engine-runs", type=int, default=200,
                        help="decide() calls per engine micro-benchmark size")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite report.md from the results.json of a previous run")
    parser.add_argument("--export-scenario", metavar="NAME",
                        help="print a scenario in the simulator's format (JSON) and exit")
    args = parser.parse_args(argv)
    if not 1 <= args.speed <= MAX_SPEED:
        parser.error(f"--speed must be within 1..{MAX_SPEED:g}")
    return args


# --- environment --------------------------------------------------------------------------


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def environment() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    redis_version = _cmd(["redis-server", "--version"]).split(" v=")[-1].split(" ")[0]
    commit = _cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return {
        "CPU model": cpu, "CPU cores": str(os.cpu_count()), "memory": mem,
        "OS": platform.platform(), "python": platform.python_version(),
        "celery": _version("celery"), "celery-redbeat": _version("celery-redbeat"),
        "redis-py": _version("redis"), "proxmoxer": _version("proxmoxer"),
        "redis-server": redis_version or "?",
        "proxlb": benchvenv.package_version("proxlb") or "not installed",
        "ortools (lower bound)": benchvenv.package_version("ortools") or "not installed",
        "matplotlib (plots)": benchvenv.package_version("matplotlib") or "not installed",
        "git commit": commit or "?", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- pieces -------------------------------------------------------------------------------


def engine_figures(runs: int) -> list[dict[str, Any]]:
    """Run in a fresh interpreter, as `python -m benchmarks.engine_bench` would: the runner's
    own heap would otherwise add its garbage-collection pauses to the engine's p99."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.engine_bench", "--json",
                           "--runs", str(runs)], cwd=REPO, check=True, capture_output=True,
                          text=True)
    figures: list[dict[str, Any]] = json.loads(done.stdout)
    for e in figures:
        print(f"  engine {e['name']:42s} p50 {e['p50_ms']:7.2f} ms  p99 {e['p99_ms']:7.2f} ms  "
              f"(goal {e['goal_ms']:.0f} ms)", flush=True)
    return figures


def lower_bound(sc: BenchScenario, data: dict[str, Any], python: Path | None,
                workdir: Path) -> tuple[dict[str, Any] | None, str]:
    if sc.lower_bound_at is None:
        return None, "Lower bound: n/a (loads drift over time; no single placement problem)."
    problem = extract(data, sc.lower_bound_at, CPU_MAX, MEMORY_MAX)
    weak = relaxed(problem)
    nodes, guests = len(problem["nodes"]), len(data["guests"])
    if guests > 5000:
        return {**weak, "relaxed": weak["moves"]}, (
            f"Exact lower bound out of reach ({nodes} nodes x {guests:,} guests: about a "
            "million placement variables for CP-SAT on 2 cores); the relaxed per-node bound "
            "is given.")
    if python is None:
        return {**weak, "relaxed": weak["moves"]}, (
            "Exact lower bound skipped (benchmark venv with OR-Tools unavailable).")
    source = workdir / "lower-bound-problem.json"
    answer = workdir / "lower-bound-answer.json"
    source.write_text(json.dumps(problem))
    try:
        subprocess.run([str(python), "-m", "benchmarks.lower_bound", str(source), str(answer),
                        "120"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       check=True, timeout=300, capture_output=True)
        return {**json.loads(answer.read_text()), "relaxed": weak["moves"]}, ""
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return {**weak, "relaxed": weak["moves"]}, f"Exact lower bound failed ({exc})."


def plot(res: ScenarioResult, runs: list[tuple[Metrics, Any]], python: Path | None,
         out: Path, workdir: Path) -> str | None:
    if python is None or not runs:
        return None
    data = {"scenario": res.scenario.name, "cpu_max": CPU_MAX, "memory_max": MEMORY_MAX,
            "runs": [{"label": m.label, **series.to_dict(),
                      "events": [e.__dict__ for e in m.events]} for m, series in runs]}
    source = workdir / "plot-input.json"
    source.write_text(json.dumps(data))
    png = out / f"{res.scenario.name}.png"
    try:
        subprocess.run([str(python), "-m", "benchmarks.plot", str(source), str(png)], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=300,
                       capture_output=True)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  plot failed: {exc}", flush=True)
        return None
    return png.name


def systems_for(sc: BenchScenario, names: list[str], speed: float, python: Path | None,
                interval: int) -> tuple[list[Any], list[str]]:
    chosen: list[Any] = []
    skipped: list[str] = []
    for name in names:
        if name == "pve-balancer":
            chosen.append(PveBalancer(speed))
            continue
        method = name.removeprefix("proxlb-")
        if python is None:
            skipped.append(f"{name}: benchmark venv unavailable")
        else:
            chosen.append(ProxLB(method, speed, python, interval))
    return chosen, skipped


def summary_line(m: Metrics) -> str:
    return (f"    {m.label:24s} migrations {m.issued:3d} (failed {m.failed}) ping-pong "
            f"{m.ping_pongs} in-flight {m.max_in_flight} saturation {fmt(m.saturation_node_s)} "
            f"node-s relief {fmt(m.relief_s, none='never')} s API/cycle "
            f"{fmt(m.api_per_cycle, 1)}" + (f" [{m.notes[0][:80]}]" if m.notes else ""))


# --- main ---------------------------------------------------------------------------------


def settings_lines(args: argparse.Namespace, mode: str) -> list[str]:
    s = args.speed
    return [
        f"Mode `{mode}`; simulator speed {s:g}x (big and huge: 10x) unless stated: "
        f"simulated time runs {s:g} times faster than real time.",
        f"pve-balancer: real Redis, Celery worker (prefork, 2 processes) and RedBeat beat; "
        f"interval {PROD_INTERVAL:g} s, EMA window {PROD_EMA_WINDOW:g} s and cooldown "
        f"{PROD_COOLDOWN:g} s in simulated time (config values divided by the speed), "
        "everything else at its default (cpu_max/memory_max 0.8, safety margin 0.05, "
        "proactive margin 0.20).",
        f"ProxLB 2.3.0 (PyPI, own venv): `python -m proxlb -c FILE` as its systemd unit runs "
        f"it, daemon every {args.proxlb_interval} simulated minutes; README defaults "
        "(balanciness 10, cpu/memory_threshold 75, mode used, sequential live migrations with "
        "local disks and conntrack state, VMs and CTs), method `memory` (its default) and "
        "method `cpu`; token auth, SSL verification off; its sleeps run on the simulated "
        "clock (benchmarks/proxlb_launcher.py).",
        "Node loads sampled from the simulator's model every 5 simulated seconds; every "
        "system starts on a fresh simulator with the same seed.",
    ]


NOTES = [
    "API calls/cycle for pve-balancer are at production timings: the calls of each evaluate "
    "(and of the migration tasks it starts), plus the amortised cached reads (HA rules, HA "
    "manager status and cluster options every 60 s, the cluster task list every 10 s, i.e. "
    "0.75 per 5 s cycle). The cache TTLs are real-time constants, so at a speed factor the "
    "raw count per cycle is lower; it is listed per scenario as 'as measured'.",
    "ProxLB's cycle is one pass (`GET /nodes` ... migrations done). Its pass includes waiting "
    "for its migrations; no per-pass latency is given. Each request's real latency counts "
    "speed-times in simulated time, so ProxLB's data collection (3 calls per guest, plus "
    "0.1 s pauses) takes longer in simulated time than on a real cluster, and its relief "
    "times are pessimistic by roughly a simulated minute on the small scenarios.",
    "Celery beat at sub-second intervals (5 s / speed) runs somewhat behind schedule, so "
    "the number of evaluate cycles is lower than duration / 5 s (see cycles per scenario).",
    "Evaluate latency p50/p99 is the Celery task runtime of `balancer.evaluate` from the "
    "worker log (real milliseconds; it includes the PVE calls to the simulator).",
    "Redis commands per cycle are INFO commandstats deltas over the run (everything: Celery "
    "broker, results, events, RedBeat and the balancer's state) divided by evaluate cycles.",
    "big and huge run at 10x and longer (40 and 90 simulated minutes) so that ProxLB "
    "completes its passes. One pass reads three calls per guest (config and two 1-hour RRD "
    "series) and pauses 0.1 s before RRD calls: on big ~4,400 requests, ~30 s of real "
    "request time plus ~8 simulated minutes of its own pauses, i.e. ~13 simulated minutes "
    "at 10x; on huge ~40,000 requests, about 100 simulated minutes. A real cluster answers "
    "a request in roughly 10-30 ms, so at 10x ProxLB's request time is charged a few times "
    "over: its relief times on big and huge are pessimistic by up to that much.",
    "huge at 10x: one pve-balancer evaluate reads 10,000 guests in about a second of real "
    "time, i.e. ~10 simulated seconds, twice the production interval, so its cycles there "
    "run about half as often as in production and its relief time is pessimistic too.",
    "Noise in the simulator depends on absolute simulated time, and each run's clock starts "
    "at the wall-clock time of that run: guests with `noise` differ slightly between runs "
    "(the lower bound and pve-balancer's figures on big vary by a few moves between runs).",
    "huge: neither ProxLB run finished its first pass within the 90 simulated minutes "
    "(27,000 and 28,500 of its ~40,000 reads), so it made no move. Its own pauses alone "
    "come to roughly 50 simulated minutes per pass on 10,000 guests (~8 on big's 1,500), so "
    "on a real cluster too its first migration would come about an hour after it starts.",
    "huge: the exact lower bound is out of reach for CP-SAT, the relaxed per-node bound "
    "(fewest guests whose load covers each hot node's excess) is given instead.",
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export_scenario:
        json.dump(get(args.export_scenario).load(), sys.stdout, indent=1)
        print()
        return 0
    install_handlers()
    if args.render_only:
        return rerender(args)
    if args.scenario:
        scenarios = [get(name) for name in args.scenario]
        mode = "custom"
    elif args.quick:
        scenarios = [get(name) for name in QUICK]
        mode = "quick"
    else:
        scenarios = list(SCENARIOS)
        mode = "full"
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = set(names) - {"pve-balancer", "proxlb-memory", "proxlb-cpu"}
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
    if shutil.which("redis-server") is None and "pve-balancer" in names:
        raise SystemExit("redis-server is missing (make redis)")
    out = args.out or RESULTS / mode
    out.mkdir(parents=True, exist_ok=True)
    work = WORK / mode
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    results: list[ScenarioResult] = []
    env: dict[str, str] = {}
    engine: list[dict[str, Any]] = []
    try:
        python = benchvenv.ensure(work / "venv-install.log")
        env = environment()
        print(f"pve-balancer benchmarks ({mode}) on {env['CPU model']} x{env['CPU cores']}; "
              f"results -> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}",
              flush=True)
        print("engine micro-benchmark (benchmarks/engine_bench.py):", flush=True)
        engine = engine_figures(args.engine_runs)
        for sc in scenarios:
            results.append(run_scenario(sc, args, mode, names, python, out, work))
            write(out, results, engine, env, args, mode)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything this run started", flush=True)
        return 130
    finally:
        stop_all()
    if results:
        env["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        env["wall time"] = f"{time.monotonic() - started:.0f} s"
        write(out, results, engine, env, args, mode)
    print(f"done in {time.monotonic() - started:.0f} s: {out / 'report.md'}", flush=True)
    return 0


def run_scenario(sc: BenchScenario, args: argparse.Namespace, mode: str, names: list[str],
                 python: Path | None, out: Path, work: Path) -> ScenarioResult:
    data = sc.load()
    size = (len(data["nodes"]), len(data["guests"]))
    speed = min(sc.speed or args.speed, args.speed)
    duration = args.duration or (sc.quick_duration if mode == "quick" and sc.quick_duration
                                 else sc.duration)
    print(f"\n{sc.name}: {sc.summary} — {duration / 60:g} simulated min at {speed:g}x",
          flush=True)
    sc_work = work / sc.name
    sc_work.mkdir(parents=True, exist_ok=True)
    lb, note = lower_bound(sc, data, python, sc_work)
    if lb is None:
        print(f"    {note}", flush=True)
    else:
        print(f"    lower bound: {lb_text(lb)}" + (f" ({note})" if note else ""), flush=True)
    res = ScenarioResult(sc, size, lb, note=note)
    chosen, skipped = systems_for(sc, names, speed, python, args.proxlb_interval)
    runs = []
    for system in chosen:
        run = run_one(sc, data, system, speed, duration, sc_work / system.name)
        metrics = measure(run)
        res.metrics.append(metrics)
        runs.append((metrics, run.series))
        print(summary_line(metrics) + f"  ({run.real_seconds:.0f} s real)", flush=True)
    for line in skipped:
        print(f"    {line}", flush=True)
        res.note = (res.note + " " if res.note else "") + line + "."
    res.plot = plot(res, runs, python, out, sc_work)
    return res


def rerender(args: argparse.Namespace) -> int:
    """report.md again from results.json (after a change to the report's layout)."""
    mode = "custom" if args.scenario else "quick" if args.quick else "full"
    out = args.out or RESULTS / mode
    payload = json.loads((out / "results.json").read_text())
    results = []
    for item in payload["scenarios"]:
        metrics = []
        for raw in item["systems"]:
            raw = {k: (math.nan if v is None and k in _NAN_FIELDS else v) for k, v in raw.items()}
            raw["events"] = [MoveEvent(**e) for e in raw["events"]]
            raw.setdefault("relief_sampled_s", raw.get("relief_s"))  # results before it
            metrics.append(Metrics(**raw))
        results.append(ScenarioResult(get(item["name"]), (item["nodes"], item["guests"]),
                                      item["lower_bound"], metrics, item["plot"], item["note"]))
    args.speed = payload["speed"]
    args.proxlb_interval = payload["proxlb_interval_minutes"]
    settings = {"mode": payload["mode"], "lines": settings_lines(args, payload["mode"]),
                "notes": NOTES}
    (out / "report.md").write_text(render(results, payload["engine"], payload["environment"],
                                          settings))
    print(f"rewrote {out / 'report.md'}")
    return 0


_NAN_FIELDS = {"imbalance_start", "imbalance_end", "spread_end", "api_per_cycle",
               "api_per_cycle_measured", "latency_p50_ms", "latency_p99_ms",
               "all_cycles_p50_ms"}


def write(out: Path, results: list[ScenarioResult], engine: list[dict[str, Any]],
          env: dict[str, str], args: argparse.Namespace, mode: str) -> None:
    settings = {"mode": mode, "lines": settings_lines(args, mode), "notes": NOTES}
    (out / "report.md").write_text(render(results, engine, env, settings))
    payload = {
        "environment": env, "mode": mode, "speed": args.speed,
        "proxlb_interval_minutes": args.proxlb_interval, "engine": engine,
        "scenarios": [{"name": r.scenario.name, "nodes": r.size[0], "guests": r.size[1],
                       "lower_bound": r.lower_bound, "note": r.note, "plot": r.plot,
                       "systems": [_clean(m.to_dict()) for m in r.metrics]} for r in results],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))


def _clean(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
