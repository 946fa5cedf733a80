"""`pve-balancer status` and `history`: the shared state in Redis, for people."""

from __future__ import annotations

import argparse
import json
from typing import Any

from balancer.cli.common import EXIT_OK, EXIT_UNAVAILABLE, load, store_or_report
from balancer.cli.drain import render_drains
from balancer.render import clock, pct, seconds, table
from balancer.state.pause import PauseState
from balancer.status import collect_status


def cmd_status(args: argparse.Namespace) -> int:
    """Show the migration lock and the running migration, per-node CPU EMA and memory,
    cooldowns and backoffs, and the last decisions (all from Redis)."""
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    status = collect_status(store, config, args.decisions)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(_render_status(status))
    return EXIT_OK


def _render_status(status: dict[str, Any]) -> str:
    lock = status["lock"]
    age = status["last_evaluate_age_seconds"]
    paused = status["paused"]
    out = [] if paused is None else [f"PAUSED: {PauseState(**paused).describe()}", ""]
    out += ["last evaluate: never" if age is None else
           f"last evaluate: {status['last_evaluate_at']} ({seconds(age)} ago)",
           "migration lock: free" if lock is None else
           f"migration lock: held for vm {lock['vmid']} {lock['source']} -> {lock['target']}"
           f" (task {lock['upid'] or 'starting'}, lock expires in "
           f"{seconds(lock['ttl_remaining'])}, follower "
           f"{'alive' if lock['follower_alive'] else 'silent'})", ""]
    out.append(table(["node", "online", "cpu", "cpu ema", "samples", "memory", "guests"], [
        [n["name"], "yes" if n["online"] else "no", pct(n["cpu"]),
         pct(n["cpu_ema"]) + (" settling" if n.get("cpu_settling") else ""),
         n["ema_samples"], pct(n["memory"]), n["guests"]] for n in status["nodes"]])
        if status["nodes"] else "no node data yet (has an evaluate run?)")
    out.append("")
    if status["violations"]:
        out.append("broken placement rules (repaired one move per cycle when possible):")
        out.extend(f"  {v['rule']}: {v['text']}" for v in status["violations"])
    else:
        out.append("no broken placement rules")
    out.append("")
    if status["drains"]:
        out.append("drained nodes:")
        out.append(render_drains(status["drains"]))
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
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    migrations = [m.row() for m in store.history.migrations()[:args.limit]]
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
