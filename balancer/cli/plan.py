"""`pve-balancer plan`: what the balancer would do now, and why. Migrates nothing."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from balancer.cli.common import EXIT_OK, load, open_store
from balancer.config import Config
from balancer.engine import CpuReading, Decision, EngineInput, above_proactive, decide
from balancer.model import ClusterSnapshot
from balancer.pve import PveClient, PveError
from balancer.pve.snapshot import build_snapshot, read_snapshot
from balancer.quiet import open_window
from balancer.runtime.choose import PreconditionFailed, choose_move, decision_seed
from balancer.runtime.timings import Timings
from balancer.state import StateStore
from balancer.state.marks import MarksNow


def _plan_inputs(snapshot: ClusterSnapshot, store: StateStore | None, config: Config,
                 notes: list[str]) -> EngineInput:
    """CPU EMAs, blocked VMs, proactive holds and drains from Redis when available; otherwise the
    current measurement, said so, because a hand-run plan must not wait a window for
    history. Read only: a plan records nothing, not even a hold."""
    min_samples = config.balancing.ema_min_samples
    stored = store.ema.readings() if store is not None else {}
    marks = store.marks.current() if store is not None else MarksNow(blocked={}, left={})
    held, guest_cpu = None, None
    if store is not None:
        gap = Timings.from_config(config.balancing).hold_gap
        held = store.holds.peek(above_proactive(snapshot, config.balancing), gap)
        guest_cpu = store.guest_ema.values() or None
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
    if held is None:
        notes.append("no proactive hold history: a proactive move is shown without its wait")
    drained = ({node: d.describe() for node, d in store.drains.all().items()}
               if store is not None else {})
    quiet = open_window(config.balancing.quiet_hours, snapshot.taken_at)
    return EngineInput(snapshot, cpu, marks.blocked, config.balancing,
                       decision_seed(snapshot, config.balancing), proactive_held=held,
                       guest_cpu=guest_cpu, drained=drained,
                       quiet=None if quiet is None else quiet.describe(),
                       left_recently=marks.left)


class SnapshotFileError(Exception):
    """`--snapshot FILE` is missing or is no saved snapshot: a usage error, not the config."""


def _snapshot_from_file(path: str) -> tuple[ClusterSnapshot, dict[str, Any]]:
    """A saved snapshot: the raw API payloads (`--save-snapshot`) plus optional `cpu_ema`
    {node: {value, samples}} and `blocked` {vmid: reason}."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SnapshotFileError(f"cannot read snapshot {path}: {exc}") from None
    if not isinstance(doc, Mapping) or "resources" not in doc:
        raise SnapshotFileError(
            f"snapshot {path}: expected a mapping with 'resources' and 'status'")
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
    config = load(args)
    notes: list[str] = []
    client: PveClient | None = None
    if args.snapshot:
        snapshot, doc = _snapshot_from_file(args.snapshot)
        cpu = {node: CpuReading(float(v["value"]), int(v.get("samples", 0)))
               for node, v in (doc.get("cpu_ema") or {}).items()}
        inp = _plan_inputs(snapshot, None, config, [])
        blocked = {int(k): str(v) for k, v in (doc.get("blocked") or {}).items()}
        inp = dataclasses.replace(inp, cpu=cpu or inp.cpu, blocked=blocked)
        notes.append(f"offline snapshot {args.snapshot}: PVE's migrate precondition not asked, "
                     "no proactive hold applied")
    else:
        client = PveClient(config.proxmox)
        read = read_snapshot(client)
        snapshot = read.snapshot
        if args.save_snapshot:
            _save_snapshot(client, args.save_snapshot)
            notes.append(f"raw snapshot saved to {args.save_snapshot}")
        for moving in read.running_migrations:
            notes.append(f"vm {moving.vmid} is migrating now: the balancer itself would wait")
        inp = _plan_inputs(snapshot, open_store(config), config, notes)
    refused: list[str] = []
    decision = _decide(client, inp, refused)
    notes += refused
    _print_decision(decision, notes, args.json)
    return EXIT_OK


def _decide(client: PveClient | None, inp: EngineInput, refused: list[str]) -> Decision:
    if client is None:
        return decide(inp)
    try:
        return choose_move(client, inp, on_refused=lambda refusal: refused.append(
            f"PVE would refuse vm {refusal.vmid}: {refusal.reason}"))
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


