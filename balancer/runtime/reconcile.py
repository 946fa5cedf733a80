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

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from balancer.logs import event_fields
from balancer.migrations import EventKind, Migration, MigrationEvent, MigrationRef
from balancer.model import ClusterSnapshot, Guest
from balancer.pve.errors import PveError
from balancer.pve.records import TaskInfo
from balancer.runtime.context import Runtime
from balancer.runtime.outcome import abort, fail, succeed
from balancer.runtime.results import StepResult
from balancer.runtime.skip import Skip

log = logging.getLogger("balancer.reconcile")

COOLDOWNS_REBUILT = "cooldowns-rebuilt"
#: The flag lives as long as the history: only a store that lost its data lacks it. (It once
#: expired with the cooldown, and every 10 minutes the rebuild asked each of 128 nodes.)
REBUILT_FLAG_TTL = 30 * 86400.0

#: How many of the newest migration events are searched for a migration without an end. One
#: migration runs at a time and every settled cycle reconciles, so only the newest can be open.
RECENT_EVENTS = 20

#: PVE's clock and ours may disagree a little when searching its task list.
CLOCK_SLACK = 60.0

LOST_FOLLOWER = "nobody followed the migration to its end; outcome read from PVE"
LOST_STATE = "the state store lost its data; outcome read from PVE's task list"


def open_migrations(migrations: list[Migration]) -> list[Migration]:
    """Our migrations (requested by a decision) without a recorded end, oldest first."""
    found = [m for m in migrations
             if not m.ended and m.decision_id and m.source is not None and m.target is not None]
    return sorted(found, key=lambda m: m.requested_at or 0.0)


def reconcile_unfinished(rt: Runtime, snapshot: ClusterSnapshot,
                         recent: list[Migration]) -> None:
    """Settle every migration of ours that has no recorded end (call on a settled cluster);
    `recent` are the migrations the newest `RECENT_EVENTS` events tell of."""
    for migration in open_migrations(recent):
        token = rt.store.lock.acquire(rt.timings.lock_ttl)
        if token is None:
            raise Skip("migration_in_flight", "migration lock was taken by another worker")
        m = migration.ref
        end = settle(m, _guest(snapshot, m.vmid), functools.partial(_our_task, rt, m))
        result = _apply(rt, token, m.with_upid(end.upid), end)
        log.warning("reconciled a migration nobody saw end", extra=event_fields(
            vmid=m.vmid, decision_id=m.decision_id, outcome=str(result.state)))


def _guest(snapshot: ClusterSnapshot, vmid: int) -> Guest | None:
    return next((g for g in snapshot.guests if g.vmid == vmid), None)


@dataclass(frozen=True)
class Settlement:
    """How an unseen migration ended, as read from PVE: the kind of end and why."""

    kind: EventKind
    outcome: str
    upid: str | None = None


#: (UPID, exit status) of our migrate task for a migration, None when PVE shows none.
TaskLookup = Callable[[], "tuple[str, str | None] | None"]


def settle(m: MigrationRef, guest: Guest | None, our_task: TaskLookup) -> Settlement:
    """Where the VM is now says how it ended; only a VM still on its source needs PVE's task
    list (`our_task`, asked only then) to tell "failed" from "never started". Pure."""
    if guest is None:
        return Settlement(EventKind.ABORTED, f"vm {m.vmid} no longer exists")
    if guest.node == m.target:
        return Settlement(EventKind.SUCCEEDED, "OK", upid=m.upid or _quietly(our_task))
    if guest.node != m.source:
        return Settlement(EventKind.ABORTED,
                          f"vm {m.vmid} was moved to {guest.node} by someone else")
    try:
        task = our_task()
    except PveError as exc:
        return Settlement(EventKind.FAILED, f"outcome unknown (cannot read PVE's tasks: "
                          f"{exc}); vm stayed on {m.source}", upid=m.upid)
    if task is None:
        return Settlement(EventKind.ABORTED, "no migration task was started")
    upid, exitstatus = task
    error = exitstatus if exitstatus and exitstatus != "OK" else "vm did not move"
    return Settlement(EventKind.FAILED, error, upid=upid)


def _quietly(our_task: TaskLookup) -> str | None:
    """The UPID for the record when the lock never got it (best effort: the move is known)."""
    try:
        task = our_task()
    except PveError:
        return None
    return task[0] if task else None


def _apply(rt: Runtime, token: str, m: MigrationRef, end: Settlement) -> StepResult:
    """End the migration the normal way (`outcome`), under the lock just taken."""
    if end.kind is EventKind.SUCCEEDED:
        return succeed(rt, token, m, recovered=LOST_FOLLOWER)
    if end.kind is EventKind.FAILED:
        return fail(rt, token, m, end.outcome, recovered=LOST_FOLLOWER)
    return abort(rt, token, m, end.outcome, recovered=LOST_FOLLOWER)


def _our_task(rt: Runtime, m: MigrationRef) -> tuple[str, str | None] | None:
    """(UPID, exit status) of the migrate task we started for `m`, or None if there is none."""
    if m.upid is not None:
        status = rt.client.task_status(m.upid)
        return m.upid, status.exitstatus
    assert m.source is not None
    tasks = [t for t in rt.client.find_vm_tasks(m.source, m.vmid,
                                                since=(m.requested_at or 0.0) - CLOCK_SLACK)
             if rt.client.started_migration(t)]
    if not tasks:
        return None
    newest = max(tasks, key=lambda t: t.starttime)
    return newest.upid, newest.status


def rebuild_cooldowns_if_lost(rt: Runtime, snapshot: ClusterSnapshot) -> None:
    """Call when the `COOLDOWNS_REBUILT` flag is missing (evaluate reads it with its other
    records, under the evaluate lock). After Redis lost its data, recent moves are read back
    from PVE's task list (our own token's migrate tasks) so a VM just moved is not moved
    again; the ones our history does not know are recorded as recovered outcomes."""
    cooldown = rt.config.balancing.migration_cooldown_seconds
    now = rt.clock()
    try:
        # A move's task lives on its source node; an offline node cannot be asked (its moves'
        # VMs are elsewhere by now, or nowhere we could move them from).
        tasks = rt.client.recent_balancer_migrations(
            since=now - cooldown, nodes=[n.name for n in snapshot.nodes if n.online])
    except PveError as exc:
        raise Skip("read_failed", f"cannot rebuild cooldowns from PVE tasks: {exc}") from None
    known = _known_upids(rt.store.history.events())
    for task in tasks:
        remaining = task.starttime + cooldown - now
        if task.vmid is not None and remaining > 0:
            rt.store.marks.set_cooldown(task.vmid, remaining,
                                        f"moved by us at {task.starttime} (from PVE task log)")
        if task.vmid is not None and not task.running and task.upid not in known:
            _record_recovered(rt, task, _guest(snapshot, task.vmid), now)
    rt.store.cache.set(COOLDOWNS_REBUILT, {"at": now, "found": len(tasks)}, REBUILT_FLAG_TTL)


def _known_upids(events: list[MigrationEvent]) -> set[str]:
    return {upid for e in events for upid in (e.upid, e.ha_request) if upid}


def _record_recovered(rt: Runtime, task: TaskInfo, guest: Guest | None, now: float) -> None:
    """One of our migrate tasks our history does not know: record how it ended. An HA request
    (`hamigrate`) only succeeded if HA actually moved the VM."""
    if not rt.store.history.claim_end(f"upid:{task.upid}"):
        return  # recorded already (by its follower or an earlier rebuild)
    moved = guest is not None and guest.node != task.node
    ok = task.status == "OK" and (task.type == "qmigrate" or moved)
    assert task.vmid is not None
    event = MigrationEvent(
        kind=EventKind.SUCCEEDED if ok else EventKind.FAILED, vmid=task.vmid, at=now,
        source=task.node, target=guest.node if guest is not None and moved else None,
        upid=task.upid, outcome=task.status or "unknown", recovered=LOST_STATE)
    rt.store.history.record_migration_event(event)
    log.warning("recorded a migration from PVE's task list", extra=event_fields(
        vmid=task.vmid, upid=task.upid, outcome=str(event.kind)))
