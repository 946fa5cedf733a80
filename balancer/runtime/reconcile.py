"""Outcomes nobody saw: reconcile our records with what PVE shows.

A migration's end is normally recorded by its follower (`poll_migration`). It goes unseen when
the lock was lost on the way: a worker killed between PVE accepting the migration and the UPID
being attached, a migrate POST whose answer was lost (`PveMigrationUnconfirmed`), a poller
delayed past the lock's TTL, or Redis losing its data. Evaluate runs these checks only on a
settled cluster (our lock free, PVE showing nothing moving), so what PVE shows is final:

* `reconcile_unfinished`: a migration in our history without an end is settled from the
  snapshot (where is the VM now?) and, when it did not move, from PVE's task list; it then ends
  the normal way (`outcome`: record, cooldown or backoff) under the migration lock, once.
* `rebuild_cooldowns_if_lost`: after Redis lost its data, recent moves are read back from PVE's
  task list (our own token's migrate tasks) so a VM just moved is not moved again, and their
  outcomes are recorded again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from balancer.logs import event_fields
from balancer.model import ClusterSnapshot, Guest
from balancer.pve.errors import PveError
from balancer.pve.records import TaskInfo
from balancer.runtime.context import Runtime
from balancer.runtime.outcome import abort, fail, succeed
from balancer.runtime.skip import Skip
from balancer.state import LockInfo

log = logging.getLogger("balancer.reconcile")

COOLDOWNS_REBUILT = "cooldowns-rebuilt"

#: How many of the newest migration events are searched for a migration without an end. One
#: migration runs at a time and every settled cycle reconciles, so only the newest can be open.
RECENT_EVENTS = 20

#: Events that end a migration; any other newest event leaves it open.
ENDS = frozenset({"succeeded", "failed", "aborted"})

#: PVE's clock and ours may disagree a little when searching its task list.
CLOCK_SLACK = 60.0

LOST_FOLLOWER = "nobody followed the migration to its end; outcome read from PVE"
LOST_STATE = "the state store lost its data; outcome read from PVE's task list"


@dataclass(frozen=True)
class OpenMigration:
    """A migration we requested whose end is not recorded, merged from its events."""

    decision_id: str
    vmid: int
    source: str
    target: str
    requested_at: float
    upid: str | None
    extra: dict[str, Any]

    def holder(self, ttl: float) -> LockInfo:
        """As the lock would have described it, so `outcome` can end it the normal way."""
        return LockInfo(acquired_at=None, ttl_remaining=ttl, vmid=self.vmid, source=self.source,
                        target=self.target, upid=self.upid, decision_id=self.decision_id,
                        extra=self.extra)


def open_migrations(events: list[dict[str, Any]]) -> list[OpenMigration]:
    """Migrations without a recorded end (`events` is newest first), oldest first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        key = event.get("decision_id")
        if isinstance(key, str) and key:
            groups.setdefault(key, []).append(event)
    out = []
    for key, group in groups.items():
        if any(event.get("event") in ENDS for event in group):
            continue  # ended once: no later event (a stale "started") re-opens it
        merged = _merge(key, group)
        if merged is not None:
            out.append(merged)
    return sorted(out, key=lambda m: m.requested_at)


def _merge(key: str, group: list[dict[str, Any]]) -> OpenMigration | None:
    facts: dict[str, Any] = {}
    for event in reversed(group):  # oldest first: later events add the UPID
        facts.update({k: v for k, v in event.items() if v is not None})
    requested = next((e for e in group if e.get("event") == "requested"), group[-1])
    vmid, source, target = facts.get("vmid"), facts.get("source"), facts.get("target")
    if not isinstance(vmid, int) or not isinstance(source, str) or not isinstance(target, str):
        return None  # not one of ours (or unreadable): nothing to settle
    shares: dict[str, Any] = {k: facts[k] for k in ("cpu_share_source", "cpu_share_target")
                              if k in facts}
    at = requested.get("at")
    return OpenMigration(decision_id=key, vmid=vmid, source=source, target=target,
                         requested_at=float(at) if isinstance(at, int | float) else 0.0,
                         upid=facts.get("upid") if isinstance(facts.get("upid"), str) else None,
                         extra=shares)


def reconcile_unfinished(rt: Runtime, snapshot: ClusterSnapshot) -> None:
    """Settle every migration of ours that has no recorded end (call on a settled cluster)."""
    for migration in open_migrations(rt.store.history.migrations(RECENT_EVENTS)):
        token = rt.store.lock.acquire(rt.timings.lock_ttl)
        if token is None:
            raise Skip("migration_in_flight", "migration lock was taken by another worker")
        result = _settle(rt, token, migration, _guest(snapshot, migration.vmid))
        log.warning("reconciled a migration nobody saw end", extra=event_fields(
            vmid=migration.vmid, decision_id=migration.decision_id, outcome=result["state"]))


def _guest(snapshot: ClusterSnapshot, vmid: int) -> Guest | None:
    return next((g for g in snapshot.guests if g.vmid == vmid), None)


def _settle(rt: Runtime, token: str, m: OpenMigration, guest: Guest | None) -> dict[str, Any]:
    """Where the VM is now says how it ended; only a VM still on its source needs PVE's task
    list to tell "failed" from "never started"."""
    holder = m.holder(rt.timings.lock_ttl)
    if guest is None:
        return abort(rt, token, m.vmid, m.source, m.target, f"vm {m.vmid} no longer exists",
                     m.decision_id, recovered=LOST_FOLLOWER)
    if guest.node == m.target:
        return succeed(rt, token, holder, m.upid or _our_upid(rt, m), recovered=LOST_FOLLOWER)
    if guest.node != m.source:
        return abort(rt, token, m.vmid, m.source, m.target,
                     f"vm {m.vmid} was moved to {guest.node} by someone else", m.decision_id,
                     recovered=LOST_FOLLOWER)
    try:
        task = _our_task(rt, m)
    except PveError as exc:
        return fail(rt, token, m.vmid, m.source, m.target,
                    f"outcome unknown (cannot read PVE's tasks: {exc}); vm stayed on {m.source}",
                    m.upid, holder, recovered=LOST_FOLLOWER)
    if task is None:
        return abort(rt, token, m.vmid, m.source, m.target, "no migration task was started",
                     m.decision_id, recovered=LOST_FOLLOWER)
    upid, exitstatus = task
    error = exitstatus if exitstatus and exitstatus != "OK" else "vm did not move"
    return fail(rt, token, m.vmid, m.source, m.target, error, upid, holder,
                recovered=LOST_FOLLOWER)


def _our_task(rt: Runtime, m: OpenMigration) -> tuple[str, str | None] | None:
    """(UPID, exit status) of the migrate task we started for `m`, or None if there is none."""
    if m.upid is not None:
        status = rt.client.task_status(m.upid)
        return m.upid, status.exitstatus
    tasks = [t for t in rt.client.find_vm_tasks(m.source, m.vmid,
                                                since=m.requested_at - CLOCK_SLACK)
             if rt.client.started_migration(t)]
    if not tasks:
        return None
    newest = max(tasks, key=lambda t: t.starttime)
    return newest.upid, newest.status


def _our_upid(rt: Runtime, m: OpenMigration) -> str | None:
    """The UPID for the record when the lock never got it (best effort: the move is known)."""
    try:
        task = _our_task(rt, m)
    except PveError:
        return None
    return task[0] if task else None


def rebuild_cooldowns_if_lost(rt: Runtime, snapshot: ClusterSnapshot) -> None:
    """After Redis lost its data, recent moves are read back from PVE's task list (our own
    token's migrate tasks) so a VM just moved is not moved again; the ones our history does
    not know are recorded as recovered outcomes."""
    if rt.store.cache.get(COOLDOWNS_REBUILT) is not None:
        return
    cooldown = rt.config.balancing.migration_cooldown_seconds
    now = rt.clock()
    try:
        # A move's task lives on its source node; an offline node cannot be asked (its moves'
        # VMs are elsewhere by now, or nowhere we could move them from).
        tasks = rt.client.recent_balancer_migrations(
            since=now - cooldown, nodes=[n.name for n in snapshot.nodes if n.online])
    except PveError as exc:
        raise Skip("read_failed", f"cannot rebuild cooldowns from PVE tasks: {exc}") from None
    known = _known_upids(rt.store.history.migrations())
    for task in tasks:
        remaining = task.starttime + cooldown - now
        if task.vmid is not None and remaining > 0:
            rt.store.marks.set_cooldown(task.vmid, remaining,
                                        f"moved by us at {task.starttime} (from PVE task log)")
        if task.vmid is not None and not task.running and task.upid not in known:
            _record_recovered(rt, task, _guest(snapshot, task.vmid), now)
    rt.store.cache.set(COOLDOWNS_REBUILT, {"at": now, "found": len(tasks)},
                       max(cooldown, rt.timings.interval))


def _known_upids(events: list[dict[str, Any]]) -> set[str]:
    return {str(e[k]) for e in events for k in ("upid", "ha_request") if e.get(k)}


def _record_recovered(rt: Runtime, task: TaskInfo, guest: Guest | None, now: float) -> None:
    """One of our migrate tasks our history does not know: record how it ended. An HA request
    (`hamigrate`) only succeeded if HA actually moved the VM."""
    if not rt.store.history.claim_end(f"upid:{task.upid}"):
        return  # recorded already (by its follower or an earlier rebuild)
    moved = guest is not None and guest.node != task.node
    ok = task.status == "OK" and (task.type == "qmigrate" or moved)
    event: Mapping[str, Any] = {
        "event": "succeeded" if ok else "failed", "vmid": task.vmid, "source": task.node,
        "target": guest.node if guest is not None and moved else None, "upid": task.upid,
        "outcome": task.status or "unknown", "recovered": LOST_STATE, "at": now}
    rt.store.history.record_migration_event(event)
    log.warning("recorded a migration from PVE's task list", extra=event_fields(
        vmid=task.vmid, upid=task.upid, outcome=event["event"]))
