"""`migrate`: re-check the world the decision saw, ask PVE's precondition, start the move.

The decision may be seconds old: someone may have moved, stopped or locked the VM since. Any
such change aborts cleanly (the lock is released, nothing is migrated). Idempotent: a
redelivered message (its worker died after PVE took the migration) finds the UPID attached and
adopts the migration only if nobody follows it any more, so it never starts a second poller.
"""

from __future__ import annotations

import dataclasses
import logging

from balancer.engine import Trigger
from balancer.logs import event_fields
from balancer.migrations import EventKind, MigrationEvent, MigrationRef
from balancer.pve.errors import PveApiError, PveError, PveMigrationUnconfirmed
from balancer.quiet import open_window
from balancer.runtime.context import Dispatcher, Runtime, schedule_poll
from balancer.runtime.outcome import abort, fail
from balancer.runtime.results import StepResult, StepState

log = logging.getLogger("balancer.migrate")


def start_migration(rt: Runtime, dispatch: Dispatcher, vmid: int, source: str, target: str,
                    lock_token: str) -> StepResult:
    t = rt.timings
    holder = rt.store.lock.holder()
    if holder is None or not rt.store.lock.owns(lock_token):
        return _abandoned(vmid, "migration lock no longer held")
    m = holder.migration or MigrationRef(vmid=vmid, source=source, target=target)
    if m.upid:
        return _resume(rt, dispatch, m)
    if not rt.store.lock.extend(lock_token, t.lock_ttl):
        return _abandoned(vmid, "migration lock no longer held")
    with rt.client.deadline(t.recheck_deadline):
        refusal = _recheck(rt, vmid, source, target)
    if refusal is None:
        refusal = _held_back(rt, m, target)
    if refusal is not None:
        return abort(rt, lock_token, m, refusal)
    # Beat before attaching the UPID: evaluate adopts a migration whose follower is silent.
    rt.store.heartbeat.beat(lock_token, t.heartbeat_ttl)
    # The fence: the POST goes out only if the lock is still ours right now, and the lock is
    # made to outlive the POST. A newer decision (or a wiped Redis) has replaced the token.
    if not rt.store.lock.extend(lock_token, _post_budget(rt)):
        log.warning("migration lock lost during the re-check: not sending the POST",
                    extra=event_fields(vmid=vmid, decision_id=m.decision_id))
        return _abandoned(vmid, "migration lock lost before the POST")
    try:
        upid = rt.client.migrate(source, vmid, target)
    except PveMigrationUnconfirmed as exc:
        # PVE may or may not have started it: keep the lock until it expires so that
        # nothing else starts meanwhile; evaluate then sees PVE's task if it runs.
        # Evaluate reconciles the outcome from PVE once the lock is gone.
        log.error("migration unconfirmed", extra=event_fields(vmid=vmid, error=str(exc)))
        rt.store.marks.record_failure(vmid, str(exc), rt.timings.backoff_base,
                                      rt.timings.backoff_max)
        rt.store.history.record_migration_event(MigrationEvent.of(
            EventKind.UNCONFIRMED, m, rt.clock(), outcome=str(exc)))
        return StepResult.about(StepState.UNCONFIRMED, m, reason=str(exc))
    except PveError as exc:
        return fail(rt, lock_token, m, f"PVE refused the migration: {exc}")
    started_at = rt.clock()
    m = dataclasses.replace(m, upid=upid, started_at=started_at)
    if not rt.store.lock.attach(lock_token, upid=upid, started_at=started_at) or (
            m.decision_id and rt.store.history.ended(m.decision_id)):
        # Only a pause longer than the POST budget between the fence and the POST gets here.
        log.error("migration started after its lock was lost; PVE's task list will show it",
                  extra=event_fields(vmid=vmid, upid=upid, decision_id=m.decision_id))
        rt.store.history.record_migration_event(
            MigrationEvent.of(EventKind.ORPHANED, m, started_at))
        return StepResult.about(StepState.ORPHANED, m)
    rt.store.lock.extend(lock_token, t.lock_ttl)
    rt.store.history.record_migration_event(MigrationEvent.of(EventKind.STARTED, m, started_at))
    log.info("migration started", extra=event_fields(
        vmid=vmid, source=source, target=target, upid=upid, decision_id=m.decision_id))
    schedule_poll(rt, dispatch, upid, lock_token, rt.timings.poll_interval)
    return StepResult.about(StepState.STARTED, m)


def _abandoned(vmid: int, reason: str) -> StepResult:
    return StepResult(StepState.ABANDONED, vmid=vmid, reason=reason)


def _held_back(rt: Runtime, m: MigrationRef, target: str) -> str | None:
    """What an operator said since the decision: a pause, a drain of the target, a quiet
    window that opened (only a drain may start in one)."""
    if (paused := rt.store.pause.current()) is not None:
        return f"balancer {paused.describe()}"
    drains = rt.store.drains.all()
    if (drained := drains.get(target)) is not None:
        return f"target {target} was drained {drained.describe()}"
    if (m.reason == str(Trigger.DRAIN) and m.source not in drains
            and not rt.config.balancing.evacuate_ha_maintenance):
        return f"source {m.source} was undrained after the decision"
    quiet = open_window(rt.config.balancing.quiet_hours, rt.clock())
    if quiet is not None and m.reason != str(Trigger.DRAIN):
        return f"{quiet.describe()} began: only drains move"
    return None


def _post_budget(rt: Runtime) -> float:
    """How long the lock must outlive the fence: the POST, and the look for its task when the
    answer is lost, with room; never less than the usual TTL."""
    timeout = rt.config.proxmox.timeout_seconds
    return max(rt.timings.lock_ttl, 3 * timeout + 10.0)


def _resume(rt: Runtime, dispatch: Dispatcher, m: MigrationRef) -> StepResult:
    """A redelivered message for a migration PVE already runs: adopt it the way evaluate does
    (only when the follower's heartbeat is silent, under a new token), else leave it alone."""
    assert m.upid is not None
    t = rt.timings
    token = rt.store.lock.take_over(rt.store.heartbeat, t.lock_ttl, t.heartbeat_ttl)
    if token is None:
        return StepResult.about(StepState.FOLLOWING, m, reason="already followed by another task")
    log.warning("migration follower silent; taking over",
                extra=event_fields(vmid=m.vmid, upid=m.upid))
    schedule_poll(rt, dispatch, m.upid, token, 0.0)
    return StepResult.about(StepState.ADOPTED, m)


def _recheck(rt: Runtime, vmid: int, source: str, target: str) -> str | None:
    """Why the move no longer makes sense, or None when PVE still agrees with the decision."""
    try:
        status = rt.client.vm_status(source, vmid)
    except PveApiError as exc:
        return f"vm {vmid} is no longer on {source}: {exc.message}"
    except PveError as exc:
        return f"cannot re-check vm {vmid}: {exc}"
    if not status.running:
        return f"vm {vmid} is {status.status}, not running"
    if status.lock:
        return f"vm {vmid} is locked ({status.lock})"
    if status.ha_state and status.ha_state not in ("started",):
        return f"vm {vmid} HA state is {status.ha_state}"
    try:
        pre = rt.client.migrate_precondition(source, vmid)
    except PveError as exc:
        return f"migrate precondition failed: {exc}"
    reason = pre.refusal(target)
    if reason is None:
        return None
    if pre.blockers:  # the VM can go nowhere: remember; a refused target is rechecked next cycle
        rt.store.marks.mark_unmigratable(vmid, reason, ttl=rt.timings.unmigratable_ttl)
    return f"PVE precondition: {reason}"
