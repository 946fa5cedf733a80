"""`poll_migration`: follow PVE's task (and, for HA guests, the VM) until the move ends.

Short polls rescheduled with a countdown instead of one long blocking task: a killed worker
loses at most one poll, the lock's TTL bounds every wait, and the heartbeat tells evaluate
when nobody follows any more.
"""

from __future__ import annotations

import logging
from typing import Any

from balancer.logs import event_fields
from balancer.pve.errors import PveError
from balancer.runtime.context import Dispatcher, Runtime, schedule_poll
from balancer.runtime.outcome import fail, succeed
from balancer.state import LockInfo

log = logging.getLogger("balancer.poll")


def poll_migration(rt: Runtime, dispatch: Dispatcher, upid: str, lock_token: str,
                   follower: str | None = None) -> dict[str, Any]:
    holder = rt.store.lock.holder()
    if holder is None or not rt.store.lock.owns(lock_token):
        # Finished already, or adopted by another follower: nothing left for this message.
        return {"state": "done", "upid": upid, "reason": "migration lock no longer held"}
    expected = holder.extra.get("follower")
    if follower is not None and expected is not None and follower != expected:
        # A redelivered copy of an earlier poll: the loop goes on with the newer message.
        return {"state": "duplicate", "upid": upid, "reason": "another poll follows it"}
    rt.store.heartbeat.beat(lock_token, rt.timings.heartbeat_ttl)
    try:
        task = rt.client.task_status(upid)
    except PveError as exc:
        log.warning("cannot read migration task; retrying",
                    extra=event_fields(upid=upid, error=str(exc)))
        return _keep_following(rt, dispatch, upid, lock_token, f"status unknown: {exc}")
    if task.running:
        return _keep_following(rt, dispatch, upid, lock_token, "running")
    assert holder.vmid is not None
    if not task.ok:
        if _landed_anyway(rt, holder, task.exitstatus):
            return succeed(rt, lock_token, holder, upid)
        return fail(rt, lock_token, holder.vmid, holder.source, holder.target,
                    task.exitstatus or "task failed", upid, holder)
    if task.type == "hamigrate":
        return _follow_ha(rt, dispatch, holder, upid, lock_token)
    return succeed(rt, lock_token, holder, upid)


def _landed_anyway(rt: Runtime, holder: LockInfo, exitstatus: str | None) -> bool:
    """`migration problems` (pve-guest-common AbstractMigrate.pm, 4a8f6cb) ends a migration
    whose phase 2 or 3 failed: the VM may already run on the target. Where it is decides."""
    if exitstatus != "migration problems" or holder.target is None or holder.vmid is None:
        return False
    try:
        status = rt.client.vm_status(holder.target, holder.vmid)
    except PveError:
        return False  # no config on the target (or no answer): it did not land there
    if status.running:
        log.warning("migration task reported problems, but the VM runs on the target",
                    extra=event_fields(vmid=holder.vmid, target=holder.target))
    return status.running


def _keep_following(rt: Runtime, dispatch: Dispatcher, upid: str, token: str,
                    state: str) -> dict[str, Any]:
    rt.store.lock.extend(token, rt.timings.lock_ttl)
    schedule_poll(rt, dispatch, upid, token, rt.timings.poll_interval)
    return {"state": state, "upid": upid}


def _follow_ha(rt: Runtime, dispatch: Dispatcher, holder: LockInfo, upid: str,
               token: str) -> dict[str, Any]:
    """Our `hamigrate` only queued a request; HA's own `qmigrate` (as root@pam) does the move,
    later, or never. Follow that task when it appears; give up after `ha_wait`."""
    assert holder.vmid is not None and holder.source is not None
    started = holder.started_at or rt.clock()
    try:
        tasks = rt.client.find_vm_tasks(holder.source, holder.vmid, since=started - 5,
                                        typefilter="qmigrate")
    except PveError as exc:
        return _keep_following(rt, dispatch, upid, token, f"waiting for HA: {exc}")
    if tasks:
        newest = max(tasks, key=lambda t: t.starttime)
        rt.store.lock.attach(token, upid=newest.upid, ha_request=upid)
        log.info("HA started the move", extra=event_fields(vmid=holder.vmid, upid=newest.upid,
                                                          ha_request=upid))
        return _keep_following(rt, dispatch, newest.upid, token, "following HA's qmigrate")
    if rt.clock() - started > rt.timings.ha_wait:
        return fail(rt, token, holder.vmid, holder.source, holder.target,
                    "dropped by HA: no migration started", upid, holder)
    return _keep_following(rt, dispatch, upid, token, "waiting for HA to start the move")
