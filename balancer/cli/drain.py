"""`pve-balancer drain`, `undrain` and `drains`: empty a node for maintenance.

The drain itself is one entry in Redis; every worker's evaluate honours it (the drained node
is never a target and loses its running VMs one per cycle). These commands only write and
read Redis: progress is what the newest evaluate saw, so `--wait` follows the balancer
rather than asking PVE on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from balancer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    load,
    store_or_report,
    who,
)
from balancer.render import clock, table
from balancer.state import StateStore
from balancer.state.cache import NODES_CACHE
from balancer.status import drain_listing

#: Drain states after which `--wait` stops (see `DrainState`).
FINAL = {"empty": EXIT_OK, "stuck": EXIT_PROBLEM, "offline": EXIT_PROBLEM}


def cmd_drain(args: argparse.Namespace) -> int:
    """Empty NODE: its running QEMU VMs leave one at a time through the normal migration
    lock, each to the best valid target, before any other trigger; nothing moves onto it
    until `undrain`. VMs that cannot go anywhere are listed, never forced; stopped VMs and
    containers stay. With --wait, show progress until the node is empty (exit 0) or stuck
    (exit 1)."""
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    known = _known_nodes(store)
    if known and args.node not in known:
        print(f"drain: no node {args.node!r} in the cluster (nodes: {', '.join(known)})",
              file=sys.stderr)
        return EXIT_USAGE
    entry = store.drains.set(args.node, by=who(), reason=args.reason or "")
    print(f"draining {args.node} {entry.describe()}: its running VMs leave one per cycle; "
          "nothing moves onto it until `pve-balancer undrain`")
    if not known:
        print("note: no node list yet (has an evaluate run?): the name was not checked")
    if (paused := store.pause.current()) is not None:
        print(f"note: the balancer is {paused.describe()}: nothing moves until resume")
    if config.balancing.dry_run:
        print("note: balancing.dry_run is true: the drain is decided and shown, never run")
        if args.wait:
            print("not waiting: in a dry run the node never empties (pve-balancer drains "
                  "shows what would move)")
        return EXIT_OK
    if not args.wait:
        return EXIT_OK
    return _wait(store, args.node, entry.since, config.balancing.interval_seconds)


def cmd_undrain(args: argparse.Namespace) -> int:
    """Let NODE take VMs again (a drain in progress stops after the running migration)."""
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    if store.drains.clear(args.node):
        print(f"{args.node} undrained: it may take VMs again")
    else:
        print(f"{args.node} was not drained")
    return EXIT_OK


def cmd_drains(args: argparse.Namespace) -> int:
    """List drained nodes (by `drain`, or in PVE HA maintenance with
    evacuate_ha_maintenance) with what the newest evaluate saw: running VMs left, the ones
    that cannot leave and why, the stopped VMs and containers that stay."""
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    listing = drain_listing(store)
    if args.json:
        print(json.dumps(listing, indent=2))
    elif not listing:
        print("no node is drained")
    else:
        print(render_drains(listing))
    return EXIT_OK


def render_drains(listing: list[dict[str, Any]]) -> str:
    out = [table(["node", "state", "running VMs", "since", "by", "reason"], [
        [d["node"], d["state"], "?" if d["running"] is None else d["running"],
         clock(d["since"]) if d["since"] else "-", d["by"], d["reason"] or "-"]
        for d in listing])]
    for d in listing:
        for s in d["stuck"]:
            out.append(f"  {d['node']}: vm {s.get('vmid')} ({s.get('name')}) cannot leave: "
                       f"{s.get('why')}")
        if d["left"]:
            out.append(f"  {d['node']}: stays (not running or a container): "
                       + ", ".join(f"{g.get('vmid')} ({g.get('why')})" for g in d["left"]))
    return "\n".join(out)


def _known_nodes(store: StateStore) -> list[str]:
    nodes = (store.cache.get(NODES_CACHE) or {}).get("nodes", [])
    return sorted(n["name"] for n in nodes if isinstance(n, dict) and "name" in n)


def _wait(store: StateStore, node: str, since: float, interval: float) -> int:
    """Print each change of the node's progress until it is empty, stuck or offline."""
    last = None
    try:
        while True:
            found = next((d for d in drain_listing(store) if d["node"] == node), None)
            if found is None:
                print(f"{node} was undrained while waiting")
                return EXIT_PROBLEM
            line = _progress_line(found)
            if line != last:
                print(line, flush=True)
                last = line
            if found["state"] in FINAL and (found["seen_at"] or 0) >= since:
                for s in found["stuck"]:
                    print(f"  vm {s.get('vmid')} ({s.get('name')}) cannot leave: "
                          f"{s.get('why')}")
                return FINAL[found["state"]]
            time.sleep(max(0.2, min(interval, 5.0)))
    except KeyboardInterrupt:
        print(f"\nstopped waiting; the drain of {node} goes on (pve-balancer drains)")
        return 130


def _progress_line(d: dict[str, Any]) -> str:
    if d["state"] == "pending":
        return f"{d['node']}: waiting for the next evaluate"
    head = f"{d['node']}: {d['state']}, {d['running']} running VMs left"
    if d["stuck"]:
        head += f", {len(d['stuck'])} cannot leave"
    return head
