"""How a migration ends: succeeded, failed or aborted. Each ends the same way: record it,
mark the VM, release the lock. Only the lock's owner can finish, and only once: the owner
first claims the finish (`MigrationLock.claim_finish`), so a duplicate of its task chain (a
message redelivered after a worker died) cannot record the outcome, back off or shift the
EMA a second time; and the migration's end is claimed in the history (`History.claim_end`),
so no other owner (a stale follower, a reconciliation) can end the same decision again.

`recovered` says how an outcome nobody saw happen was learned afterwards (reconciliation
from PVE after the follower or the state was lost); it is recorded with the event."""

from __future__ import annotations

import logging

import redis

from balancer.logs import event_fields
from balancer.migrations import EventKind, MigrationEvent, MigrationRef
from balancer.notify import migration_failed
from balancer.runtime import notices
from balancer.runtime.context import Runtime
from balancer.runtime.results import StepResult, StepState

log = logging.getLogger("balancer.migration")


def succeed(rt: Runtime, token: str, m: MigrationRef,
            recovered: str | None = None) -> StepResult:
    """The VM runs on the target: cool it down, remember the node it left (a return there
    ranks last), and move the lagging CPU averages by the share it took along, so the old
    source's EMA does not trigger a needless second move (and a source now under cpu_max is
    relieved: its EMA's noise alone does not fire again)."""
    if not _claim(rt, token, m):
        return _not_claimed(EventKind.SUCCEEDED, m)
    finished = rt.clock()
    if m.source and m.target:
        rt.store.ema.shift(m.source, -m.cpu_share_source, sampled_at=finished,
                           relieved_below=rt.config.balancing.cpu_max)
        rt.store.ema.shift(m.target, m.cpu_share_target, sampled_at=finished)
    rt.store.marks.record_success(m.vmid)
    rt.store.marks.set_cooldown(m.vmid, rt.config.balancing.migration_cooldown_seconds,
                                f"moved {m.source}->{m.target}")
    if m.source:
        rt.store.marks.record_departure(m.vmid, m.source,
                                        rt.config.balancing.return_window_seconds, now=finished)
    return _finish(rt, token, MigrationEvent.of(
        EventKind.SUCCEEDED, m, finished, duration=_duration(m, finished), outcome="OK",
        recovered=recovered))


def fail(rt: Runtime, token: str, m: MigrationRef, error: str,
         recovered: str | None = None) -> StepResult:
    """PVE refused or the task failed: back off from this VM, growing with each failure, so
    the next cycle picks another candidate instead of retrying this one."""
    if not _claim(rt, token, m):
        return _not_claimed(EventKind.FAILED, m)
    backoff = rt.store.marks.record_failure(m.vmid, error, rt.timings.backoff_base,
                                            rt.timings.backoff_max)
    now = rt.clock()
    notices.post(rt, [migration_failed(m.vmid, m.source, m.target, error)])
    return _finish(rt, token, MigrationEvent.of(
        EventKind.FAILED, m, now, duration=_duration(m, now), outcome=error, backoff=backoff,
        recovered=recovered))


def abort(rt: Runtime, token: str, m: MigrationRef, reason: str,
          recovered: str | None = None) -> StepResult:
    """The world changed since the decision (moved, stopped, locked): do nothing, cleanly."""
    if not _claim(rt, token, m):
        return _not_claimed(EventKind.ABORTED, m)
    return _finish(rt, token, MigrationEvent.of(EventKind.ABORTED, m, rt.clock(),
                                                outcome=reason, recovered=recovered))


def _claim(rt: Runtime, token: str, m: MigrationRef) -> bool:
    """The right to end this migration: the lock owner's, once; and the migration's, once."""
    if not rt.store.lock.claim_finish(token):
        return False
    if m.key is None or rt.store.history.claim_end(m.key):
        return True
    log.warning("migration end already recorded for this decision",
                extra=event_fields(decision_id=m.decision_id, upid=m.upid))
    rt.store.heartbeat.stop(token)
    rt.store.lock.release(token)
    return False


def _not_claimed(kind: EventKind, m: MigrationRef) -> StepResult:
    log.info("migration end already handled", extra=event_fields(vmid=m.vmid, upid=m.upid,
                                                                  outcome=str(kind)))
    return StepResult.about(StepState.DONE, m,
                            reason=f"{kind}, but the end is recorded by another follower")


def _finish(rt: Runtime, token: str, event: MigrationEvent) -> StepResult:
    rt.store.history.record_migration_event(event)
    rt.store.heartbeat.stop(token)
    rt.store.lock.release(token)
    try:
        rt.store.metrics.count("migrations", {"result": str(event.kind)})
        if event.duration is not None:
            rt.store.metrics.observe("migration_duration_seconds", event.duration)
    except redis.exceptions.RedisError:
        log.debug("migration metrics not recorded", exc_info=True)
    level = logging.INFO if event.kind is EventKind.SUCCEEDED else logging.WARNING
    log.log(level, f"migration {event.kind}", extra=event_fields(**event.to_json()))
    return StepResult.ended(event)


def _duration(m: MigrationRef, now: float) -> float | None:
    return None if m.started_at is None else round(now - m.started_at, 3)
