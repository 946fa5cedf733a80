"""How a migration ends: succeeded, failed or aborted. Each ends the same way: record it,
mark the VM, release the lock. Only the lock's owner can finish, and only once: the owner
first claims the finish (`MigrationLock.claim_finish`), so a duplicate of its task chain (a
message redelivered after a worker died) cannot record the outcome, back off or shift the
EMA a second time; and the decision's end is claimed in the history (`History.claim_end`),
so no other owner (a stale follower, a reconciliation) can end the same decision again.

`recovered` says how an outcome nobody saw happen was learned afterwards (reconciliation
from PVE after the follower or the state was lost); it is recorded with the event."""

from __future__ import annotations

import logging
from typing import Any

import redis

from balancer.logs import event_fields
from balancer.runtime.context import Runtime
from balancer.state import LockInfo

log = logging.getLogger("balancer.migration")


def _claim(rt: Runtime, token: str, decision_id: str | None, upid: str | None) -> bool:
    """The right to end this migration: the lock owner's, once; and the decision's, once."""
    if not rt.store.lock.claim_finish(token):
        return False
    key = decision_id or (f"upid:{upid}" if upid else None)
    if key is None or rt.store.history.claim_end(key):
        return True
    log.warning("migration end already recorded for this decision",
                extra=event_fields(decision_id=decision_id, upid=upid))
    rt.store.heartbeat.stop(token)
    rt.store.lock.release(token)
    return False


def _not_claimed(event: str, vmid: int | None, upid: str | None) -> dict[str, Any]:
    log.info("migration end already handled", extra=event_fields(vmid=vmid, upid=upid,
                                                                  outcome=event))
    return {"state": "done", "vmid": vmid, "upid": upid,
            "reason": f"{event}, but the end is recorded by another follower"}


def _finish(rt: Runtime, token: str, event: dict[str, Any],
            recovered: str | None) -> dict[str, Any]:
    now = rt.clock()
    event = {**event, "at": now}
    if recovered is not None:
        event["recovered"] = recovered
    rt.store.history.record_migration_event(event)
    rt.store.heartbeat.stop(token)
    rt.store.lock.release(token)
    try:
        rt.store.metrics.count("migrations", {"result": event["event"]})
        if event.get("duration") is not None:
            rt.store.metrics.observe("migration_duration_seconds", float(event["duration"]))
    except redis.exceptions.RedisError:
        log.debug("migration metrics not recorded", exc_info=True)
    level = logging.INFO if event["event"] == "succeeded" else logging.WARNING
    log.log(level, f"migration {event['event']}", extra=event_fields(**event))
    return {"state": event["event"], **{k: v for k, v in event.items() if k != "event"}}


def _duration(holder: LockInfo | None, now: float) -> float | None:
    if holder is None or holder.started_at is None:
        return None
    return round(now - holder.started_at, 3)


def succeed(rt: Runtime, token: str, holder: LockInfo, upid: str | None,
            recovered: str | None = None) -> dict[str, Any]:
    """The VM runs on the target: cool it down, and move the lagging CPU averages by the
    share it took along, so the old source's EMA does not trigger a needless second move."""
    assert holder.vmid is not None and holder.source and holder.target
    if not _claim(rt, token, holder.decision_id, upid):
        return _not_claimed("succeeded", holder.vmid, upid)
    finished = rt.clock()
    share_source = float(holder.extra.get("cpu_share_source", 0.0))
    share_target = float(holder.extra.get("cpu_share_target", 0.0))
    rt.store.ema.shift(holder.source, -share_source, sampled_at=finished)
    rt.store.ema.shift(holder.target, share_target, sampled_at=finished)
    rt.store.marks.record_success(holder.vmid)
    rt.store.marks.set_cooldown(holder.vmid, rt.config.balancing.migration_cooldown_seconds,
                                f"moved {holder.source}->{holder.target}")
    return _finish(rt, token, {
        "event": "succeeded", "vmid": holder.vmid, "source": holder.source,
        "target": holder.target, "upid": upid, "decision_id": holder.decision_id,
        "duration": _duration(holder, finished), "outcome": "OK"}, recovered)


def fail(rt: Runtime, token: str, vmid: int, source: str | None, target: str | None,
         error: str, upid: str | None = None, holder: LockInfo | None = None,
         recovered: str | None = None) -> dict[str, Any]:
    """PVE refused or the task failed: back off from this VM, growing with each failure, so
    the next cycle picks another candidate instead of retrying this one."""
    if not _claim(rt, token, holder.decision_id if holder else None, upid):
        return _not_claimed("failed", vmid, upid)
    backoff = rt.store.marks.record_failure(vmid, error, rt.timings.backoff_base,
                                            rt.timings.backoff_max)
    return _finish(rt, token, {
        "event": "failed", "vmid": vmid, "source": source, "target": target, "upid": upid,
        "decision_id": holder.decision_id if holder else None,
        "duration": _duration(holder, rt.clock()), "outcome": error, "backoff": backoff},
        recovered)


def abort(rt: Runtime, token: str, vmid: int, source: str | None, target: str | None,
          reason: str, decision_id: str | None = None,
          recovered: str | None = None) -> dict[str, Any]:
    """The world changed since the decision (moved, stopped, locked): do nothing, cleanly."""
    if not _claim(rt, token, decision_id, None):
        return _not_claimed("aborted", vmid, None)
    return _finish(rt, token, {"event": "aborted", "vmid": vmid, "source": source,
                               "target": target, "decision_id": decision_id,
                               "outcome": reason}, recovered)
