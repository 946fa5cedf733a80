"""The tasks users see in Flower. Each is one paragraph: get the runtime, run the step.

Results are small JSON dicts with no secrets; arguments are ids, node names and the lock's
owner token. The token is no PVE credential, but whoever holds it can end or extend the
migration lock, so task events (what Flower shows) carry `***` in its place (`argsrepr`).
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from balancer.config import REDACTED
from balancer.runtime import Runtime, evaluate, poll_migration, start_migration
from balancer.runtime.evaluate import cut_short
from balancer.runtime.notices import send_queued
from tasks.app import EVALUATE, MIGRATE, NOTIFY, POLL, app, current_config
from tasks.runtime import get_runtime


class CeleryDispatcher:
    """Schedules the next step as a Celery task."""

    def migrate(self, vmid: int, source: str, target: str, lock_token: str) -> None:
        migrate_task.apply_async(args=(vmid, source, target, lock_token),
                                 argsrepr=repr((vmid, source, target, REDACTED)))

    def poll(self, upid: str, lock_token: str, countdown: float, follower: str) -> None:
        poll_task.apply_async(args=(upid, lock_token, follower), countdown=countdown,
                              argsrepr=repr((upid, REDACTED, follower)))


def _runtime() -> Runtime:
    return get_runtime(current_config())


@app.task(name=EVALUATE, ignore_result=False)
def evaluate_task(scheduled: bool = False) -> dict[str, Any]:
    """One balancing cycle (scheduled by beat; `celery -A tasks call balancer.evaluate`).
    A cycle that outlives its time limit (PVE hanging: every read waits for its timeout and
    is retried) is a skipped cycle like any other, not a failed task."""
    rt = _runtime()
    started = time.monotonic()
    try:
        return evaluate(rt, CeleryDispatcher(), scheduled=scheduled).to_dict()
    except SoftTimeLimitExceeded:
        seconds = time.monotonic() - started
        return cut_short(rt, "time_limit", f"cycle cut short after {seconds:.1f}s (time "
                         f"limit {rt.timings.eval_lock_ttl:g}s): PVE or Redis too slow",
                         seconds).to_dict()


@app.task(name=MIGRATE)
def migrate_task(vmid: int, source: str, target: str, lock_token: str) -> dict[str, Any]:
    """Re-check the VM, then start its live migration and hand over to the poller."""
    return start_migration(_runtime(), CeleryDispatcher(), int(vmid), source, target,
                           lock_token).to_dict()


@app.task(name=POLL)
def poll_task(upid: str, lock_token: str, follower: str | None = None) -> dict[str, Any]:
    """Follow a migration until it ends; record the outcome and release the lock."""
    return poll_migration(_runtime(), CeleryDispatcher(), upid, lock_token, follower).to_dict()


@app.task(name=NOTIFY)
def notify_task() -> dict[str, int]:
    """Send the queued notifications (Apprise); the result counts them, never names a URL."""
    return send_queued(_runtime())
