"""`pve-balancer` command line: what an operator touches.

Exit codes (stable, for scripts):
  0  success (for `check`: no problems found)
  1  the command ran and found a problem (e.g. `check` failed a privilege test)
  2  usage error (argparse)
  3  configuration error
  4  PVE or Redis unreachable or refused us
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import yaml

from balancer.config import BalancingConfig, Config, ConfigError, load_config
from balancer.engine import CpuReading, Decision
from balancer.engine.constraints import derive_constraints
from balancer.model import ClusterSnapshot
from balancer.pve import PveAuthError, PveClient, PveError, PveUnreachable, run_check
from balancer.pve.snapshot import build_snapshot, read_snapshot
from balancer.render import clock, pct, seconds, table
from balancer.runtime.choose import PreconditionFailed, choose_move
from balancer.state import StateStore

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

Command = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets redacted."""
    config = _load(args)
    effective = config.redacted()
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print(yaml.safe_dump(effective, sort_keys=False).rstrip())
        print("configuration OK")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Connect to PVE with the config, verify the privileges the balancer needs and print a
    cluster summary, or a precise error."""
    config = _load(args)
    report = run_check(PveClient(config.proxmox))
    for line in report.lines:
        print(line)
    if report.snapshot is not None:
        for line in neighbour_lines(report.snapshot, config.balancing):
            print(line)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if report.ok:
        print("check OK")
        return EXIT_OK
    return EXIT_UNAVAILABLE if report.host is None else EXIT_PROBLEM


def neighbour_lines(snapshot: ClusterSnapshot, balancing: BalancingConfig) -> list[str]:
    """How the balancer will treat HA-managed guests and ProxLB-tagged guests here."""
    ha_guests = sum(1 for g in snapshot.guests if g.ha_managed)
    if snapshot.ha_auto_rebalance and balancing.leave_ha_to_pve:
        ha = f"leaving {ha_guests} HA-managed guests to PVE's auto-rebalance (leave_ha_to_pve)"
    elif snapshot.ha_auto_rebalance:
        ha = (f"balancing {ha_guests} HA-managed guests although PVE's auto-rebalance is on "
              "(leave_ha_to_pve: false): expect both to move them")
    else:
        ha = f"balancing HA-managed guests too ({ha_guests}); PVE's auto-rebalance is off"
    found = derive_constraints(snapshot, replace(balancing, proxlb_tags=True))
    groups = {g.label for gs in found.anti_affinity.values() for g in gs}
    counts = (f"{len(found.plb_ignore)} plb_ignore, {len(found.pins)} plb_pin, "
              f"{len(found.plb_affinity)} plb_affinity, "
              f"{sum(1 for g in groups if 'plb_anti_affinity' in g)} plb_anti_affinity groups")
    state = "honoured" if balancing.proxlb_tags else "IGNORED (balancing.proxlb_tags: false)"
    return [f"HA guests: {ha}", f"ProxLB tags: {counts}; {state}"]


def _open_store(config: Config) -> StateStore | None:
    """The shared state if Redis answers; `plan` works without it, `status` does not."""
    try:
        store = StateStore.from_url(config.redis.url.reveal(), socket_timeout=2.0)
        store.ping()
        return store
    except redis.exceptions.RedisError:
        return None


def _plan_inputs(snapshot: ClusterSnapshot, store: StateStore | None, min_samples: int,
                 notes: list[str]) -> tuple[dict[str, CpuReading], dict[int, str]]:
    """CPU EMAs and blocked VMs from Redis when available; otherwise the current measurement,
    said so, because a hand-run plan must not wait a window for history."""
    stored = store.ema.readings() if store is not None else {}
    blocked = store.marks.blocked() if store is not None else {}
    if store is None:
        notes.append("Redis not reachable: no CPU history, cooldowns or backoffs considered")
    cpu: dict[str, CpuReading] = {}
    for node in snapshot.nodes:
        reading = stored.get(node.name)
        if reading is not None and reading.samples >= min_samples:
            cpu[node.name] = reading
        elif node.online:
            cpu[node.name] = CpuReading(node.cpu, 1, from_measurement=True)
    measured = sorted(n for n, r in cpu.items() if r.from_measurement)
    if measured:
        notes.append("no CPU history for " + ", ".join(measured)
                     + ": using the current measurement instead of the EMA")
    return cpu, blocked


def _snapshot_from_file(path: str) -> tuple[ClusterSnapshot, dict[str, Any]]:
    """A saved snapshot: the raw API payloads (`--save-snapshot`) plus optional `cpu_ema`
    {node: {value, samples}} and `blocked` {vmid: reason}."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read snapshot {path}: {exc}") from None
    if not isinstance(doc, Mapping) or "resources" not in doc:
        raise ConfigError(f"snapshot {path}: expected a mapping with 'resources' and 'status'")
    snapshot = build_snapshot(doc["resources"], doc.get("status", []), doc.get("rules"),
                              doc.get("options"), float(doc.get("taken_at", 0.0)))
    return snapshot, dict(doc)


def _save_snapshot(client: PveClient, path: str) -> None:
    payloads = {
        "resources": client.get("cluster/resources"), "status": client.get("cluster/status"),
        "rules": client.ha_rules_payload(), "options": client.cluster_options_payload(),
        "taken_at": client.clock(),
    }
    Path(path).write_text(json.dumps(payloads, indent=1), encoding="utf-8")


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what the balancer would do now, with the full explanation. Migrates nothing."""
    config = _load(args)
    notes: list[str] = []
    client: PveClient | None = None
    if args.snapshot:
        snapshot, doc = _snapshot_from_file(args.snapshot)
        cpu = {node: CpuReading(float(v["value"]), int(v.get("samples", 0)))
               for node, v in (doc.get("cpu_ema") or {}).items()}
        cpu, _ = _plan_inputs(snapshot, None, 0, []) if not cpu else (cpu, {})
        blocked = {int(k): str(v) for k, v in (doc.get("blocked") or {}).items()}
        notes.append(f"offline snapshot {args.snapshot}: PVE's migrate precondition not asked")
    else:
        client = PveClient(config.proxmox)
        read = read_snapshot(client)
        snapshot = read.snapshot
        if args.save_snapshot:
            _save_snapshot(client, args.save_snapshot)
            notes.append(f"raw snapshot saved to {args.save_snapshot}")
        for moving in read.running_migrations:
            notes.append(f"vm {moving.vmid} is migrating now: the balancer itself would wait")
        cpu, blocked = _plan_inputs(snapshot, _open_store(config),
                                    config.balancing.ema_min_samples, notes)
    refused: list[str] = []
    decision = _decide(client, snapshot, cpu, blocked, config, refused)
    notes += refused
    _print_decision(decision, notes, args.json)
    return EXIT_OK


def _decide(client: PveClient | None, snapshot: ClusterSnapshot, cpu: dict[str, CpuReading],
            blocked: dict[int, str], config: Config, refused: list[str]) -> Decision:
    from balancer.engine import EngineInput, decide
    from balancer.runtime.choose import decision_seed

    if client is None:
        seed = decision_seed(snapshot, config.balancing)
        return decide(EngineInput(snapshot, cpu, blocked, config.balancing, seed))
    try:
        return choose_move(client, snapshot, cpu, blocked, config.balancing,
                           on_refused=lambda vmid, reason: refused.append(
                               f"PVE would refuse vm {vmid}: {reason}"))
    except PreconditionFailed as exc:
        raise PveError(str(exc)) from None


def _print_decision(decision: Decision, notes: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps({**decision.to_dict(), "notes": notes}, indent=2))
        return
    for line in decision.explanation:
        print(line)
    for note in notes:
        print(f"note: {note}")


def cmd_status(args: argparse.Namespace) -> int:
    """Show the migration lock and the running migration, per-node CPU EMA and memory,
    cooldowns and backoffs, and the last decisions (all from Redis)."""
    config = _load(args)
    store = _open_store(config)
    if store is None:
        print(f"Redis at {config.redis.redacted_url} is not reachable", file=sys.stderr)
        return EXIT_UNAVAILABLE
    status = _collect_status(store, args.decisions)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(_render_status(status))
    return EXIT_OK


def _collect_status(store: StateStore, decisions: int) -> dict[str, Any]:
    holder = store.lock.holder()
    beat = store.heartbeat.info()
    nodes = (store.cache.get("nodes") or {}).get("nodes", [])
    ema = store.ema.entries()
    return {
        "lock": None if holder is None else {
            "vmid": holder.vmid, "source": holder.source, "target": holder.target,
            "upid": holder.upid, "acquired_at": holder.acquired_at,
            "started_at": holder.started_at, "ttl_remaining": holder.ttl_remaining,
            "follower_alive": beat is not None},
        "nodes": [{**n, "cpu_ema": ema[n["name"]].value if n["name"] in ema else None,
                   "ema_samples": ema[n["name"]].samples if n["name"] in ema else 0}
                  for n in nodes],
        "marks": [{"kind": m.kind, "vmid": m.vmid, "until": m.until, "reason": m.reason}
                  for m in store.marks.listing()],
        "decisions": store.history.decisions(decisions),
    }


def _render_status(status: dict[str, Any]) -> str:
    lock = status["lock"]
    out = ["migration lock: free" if lock is None else
           f"migration lock: held for vm {lock['vmid']} {lock['source']} -> {lock['target']}"
           f" (task {lock['upid'] or 'starting'}, lock expires in "
           f"{seconds(lock['ttl_remaining'])}, follower "
           f"{'alive' if lock['follower_alive'] else 'silent'})", ""]
    out.append(table(["node", "online", "cpu", "cpu ema", "samples", "memory", "guests"], [
        [n["name"], "yes" if n["online"] else "no", pct(n["cpu"]), pct(n["cpu_ema"]),
         n["ema_samples"], pct(n["memory"]), n["guests"]] for n in status["nodes"]])
        if status["nodes"] else "no node data yet (has an evaluate run?)")
    out.append("")
    out.append(table(["vm", "blocked", "until", "reason"], [
        [m["vmid"], m["kind"], clock(m["until"]), m["reason"]] for m in status["marks"]])
        if status["marks"] else "no cooldowns or backoffs")
    out.append("")
    out.append("last decisions:" if status["decisions"] else "no decisions recorded yet")
    for d in status["decisions"]:
        headline = d["explanation"][0] if d.get("explanation") else d.get("action")
        out.append(f"  {clock(d.get('at'))}  {headline}")
    return "\n".join(out)


def cmd_history(args: argparse.Namespace) -> int:
    """Show the last migrations with their outcome and duration."""
    config = _load(args)
    store = _open_store(config)
    if store is None:
        print(f"Redis at {config.redis.redacted_url} is not reachable", file=sys.stderr)
        return EXIT_UNAVAILABLE
    migrations = migration_history(store.history.migrations(), args.limit)
    if args.json:
        print(json.dumps(migrations, indent=2))
    elif not migrations:
        print("no migrations recorded yet")
    else:
        print(table(["requested", "vm", "route", "reason", "outcome", "duration", "task"], [
            [clock(m["requested_at"]), m["vmid"], f"{m['source']} -> {m['target']}",
             m["reason"], m["outcome"], seconds(m["duration"]), m["upid"]]
            for m in migrations]))
    return EXIT_OK


def migration_history(events: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Fold the event log (newest first) into one row per migration, newest first."""
    rows: dict[str, dict[str, Any]] = {}
    for event in reversed(events):
        key = str(event.get("decision_id") or event.get("upid") or id(event))
        row = rows.setdefault(key, {"vmid": event.get("vmid"), "source": event.get("source"),
                                    "target": event.get("target"), "reason": None,
                                    "requested_at": event.get("at"), "upid": None,
                                    "outcome": "in progress", "duration": None})
        row["reason"] = event.get("reason") or row["reason"]
        row["upid"] = event.get("upid") or row["upid"]
        if event.get("event") in ("succeeded", "failed", "aborted"):
            row["outcome"] = event["event"] if event["event"] == "succeeded" else (
                f"{event['event']}: {event.get('outcome')}")
            row["duration"] = event.get("duration")
    return list(reversed(rows.values()))[:limit]


def cmd_exporter(args: argparse.Namespace) -> int:
    """Serve Prometheus metrics (read from Redis) for every worker of the cluster."""
    from balancer.exporter import run_exporter
    from balancer.logs import configure_logging

    config = _load(args)
    configure_logging(config.logging.format, config.logging.level)
    run_exporter(config, port=args.port)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pve-balancer",
        description="Live-migration load balancer for Proxmox VE 9+ (fewest migrations, "
        "no node left saturated).",
        epilog="Exit codes: 0 ok, 1 problem found, 2 usage, 3 config error, "
        "4 PVE/Redis unavailable.",
    )
    parser.add_argument(
        "--config", metavar="FILE",
        help="config file (default: $BALANCER_CONFIG or /etc/pve-balancer/balancer.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate the config and print it, secrets redacted",
                       description=cmd_check_config.__doc__)
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("check", help="connect to PVE, verify privileges, summarise the cluster",
                       description=cmd_check.__doc__)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("plan", help="show what the balancer would do now, and why",
                       description=cmd_plan.__doc__)
    p.add_argument("--json", action="store_true",
                   help='print {"action", "vmid", "source", "target", "reason", "explanation"}')
    p.add_argument("--snapshot", metavar="FILE",
                   help="decide on a saved snapshot instead of the live cluster")
    p.add_argument("--save-snapshot", metavar="FILE",
                   help="also save the live cluster's raw API payloads to FILE")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("status", help="lock, running migration, node averages, cooldowns",
                       description=cmd_status.__doc__)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--decisions", type=int, default=5, metavar="N",
                   help="how many recent decisions to show (default 5)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("history", help="last migrations with outcome and duration",
                       description=cmd_history.__doc__)
    p.add_argument("--limit", "-n", type=int, default=20, metavar="N",
                   help="how many migrations to show (default 20)")
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("exporter", help="serve Prometheus metrics from the shared state",
                       description=cmd_exporter.__doc__)
    p.add_argument("--port", type=int, default=None,
                   help="listen port (default: metrics.port from the config)")
    p.set_defaults(func=cmd_exporter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (PveAuthError, PveUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
