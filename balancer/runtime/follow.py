"""`poll_migration`: follow PVE's task (and, for HA guests, the VM) until the move ends.

Short polls rescheduled with a countdown instead of one long blocking task: a killed worker
loses at most one poll, the lock's TTL bounds every wait, and the heartbeat tells evaluate
when nobody follows any more.
"""

from __future__ import annotations

import dataclasses
import logging

from balancer.logs import event_fields
from balancer.migrations import MigrationRef
from balancer.pve.errors import PveError
from balancer.runtime.context import Dispatcher, Runtime, schedule_poll
from balancer.runtime.outcome import fail, succeed
from balancer.runtime.results import StepResult, StepState

log = logging.getLogger("balancer.poll")


def poll_migration(rt: Runtime, dispatch: Dispatcher, upid: str, lock_token: str,
                   follower: str | None = None) -> StepResult:
    holder = rt.store.lock.holder()
    if holder is None or not rt.store.lock.owns(lock_token):
        # Finished already, or adopted by another follower: nothing left for this message.
        return StepResult(StepState.DONE, upid=upid, reason="migration lock no longer held")
    if follower is not None and holder.follower is not None and follower != holder.follower:
        # A redelivered copy of an earlier poll: the loop goes on with the newer message.
        return StepResult(StepState.DUPLICATE, upid=upid, reason="another poll follows it")
    m = holder.migration
    if m is None:
        return StepResult(StepState.DONE, upid=upid, reason="the lock describes no migration")
    m = m.with_upid(upid)
    rt.store.heartbeat.beat(lock_token, rt.timings.heartbeat_ttl)
    try:
        task = rt.client.task_status(upid)
    except PveError as exc:
        log.warning("cannot read migration task; retrying",
                    extra=event_fields(upid=upid, error=str(exc)))
        return _keep_following(rt, dispatch, m, lock_token, f"task status unknown: {exc}")
    if task.running:
        return _keep_following(rt, dispatch, m, lock_token, "task running")
    if not task.ok:
        if _landed_anyway(rt, m, task.exitstatus):
            return succeed(rt, lock_token, m)
        return fail(rt, lock_token, m, task.exitstatus or "task failed")
    if task.type == "hamigrate":
        return _follow_ha(rt, dispatch, m, lock_token)
    return succeed(rt, lock_token, m)


def _landed_anyway(rt: Runtime, m: MigrationRef, exitstatus: str | None) -> bool:
    """`migration problems` (pve-guest-common AbstractMigrate.pm, 4a8f6cb) ends a migration
    whose phase 2 or 3 failed: the VM may already run on the target. Where it is decides."""
    if exitstatus != "migration problems" or m.target is None:
        return False
    try:
        status = rt.client.vm_status(m.target, m.vmid)
    except PveError:
        return False  # no config on the target (or no answer): it did not land there
    if status.running:
        log.warning("migration task reported problems, but the VM runs on the target",
                    extra=event_fields(vmid=m.vmid, target=m.target))
    return status.running


def _keep_following(rt: Runtime, dispatch: Dispatcher, m: MigrationRef, token: str,
                    reason: str) -> StepResult:
    assert m.upid is not None
    rt.store.lock.extend(token, rt.timings.lock_ttl)
    schedule_poll(rt, dispatch, m.upid, token, rt.timings.poll_interval)
    return StepResult.about(StepState.FOLLOWING, m, reason=reason)


def _follow_ha(rt: Runtime, dispatch: Dispatcher, m: MigrationRef, token: str) -> StepResult:
    """Our `hamigrate` only queued a request; HA's own `qmigrate` (as root@pam) does the move,
    later, or never. Follow that task when it appears; give up after `ha_wait`."""
    assert m.source is not None and m.upid is not None
    started = m.started_at or rt.clock()
    try:
        tasks = rt.client.find_vm_tasks(m.source, m.vmid, since=started - 5,
                                        typefilter="qmigrate")
    except PveError as exc:
        return _keep_following(rt, dispatch, m, token, f"waiting for HA: {exc}")
    if tasks:
        newest = max(tasks, key=lambda t: t.starttime)
        rt.store.lock.attach(token, upid=newest.upid, ha_request=m.upid)
        log.info("HA started the move", extra=event_fields(vmid=m.vmid, upid=newest.upid,
                                                          ha_request=m.upid))
        m = dataclasses.replace(m, upid=newest.upid, ha_request=m.upid)
        return _keep_following(rt, dispatch, m, token, "following HA's qmigrate")
    if rt.clock() - started > rt.timings.ha_wait:
        return fail(rt, token, m, "dropped by HA: no migration started")
    return _keep_following(rt, dispatch, m, token, "waiting for HA to start the move")
