"""Notifications from the runtime: post what a cycle or a migration's end is worth saying,
and send what is queued (the worker's `balancer.notify` task).

Posting is best effort: a notice lost to a Redis hiccup must never turn a decision or a
migration's end into an error. Sending retries a notice a few times, then drops it with a
warning (the event itself is in the history and the metrics either way).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import redis
from celery.exceptions import SoftTimeLimitExceeded

from balancer.engine import Decision
from balancer.logs import event_fields
from balancer.notify import Notice, Notifier, decision_notices
from balancer.runtime.context import Runtime
from balancer.state.drains import DrainEntry

log = logging.getLogger("balancer.notify")

#: Notices one `balancer.notify` run sends; the rest wait for the next run.
BATCH = 20
#: Delivery attempts before a notice is dropped.
ATTEMPTS = 3
#: One sender at a time: longer than the task's hard time limit (75 s).
SEND_LOCK_SECONDS = 90.0


def enabled(rt: Runtime) -> bool:
    return bool(rt.config.notifications.urls)


def post(rt: Runtime, notices: Sequence[Notice]) -> None:
    """Queue `notices` through their throttle (nothing when notifications are off)."""
    if not notices or not enabled(rt):
        return
    try:
        rt.store.outbox.post(notices, rt.config.notifications.throttle_seconds)
    except redis.exceptions.RedisError:
        log.warning("notifications not queued: state store unavailable",
                    extra=event_fields(kinds=[str(n.kind) for n in notices]))


def after_decision(rt: Runtime, decision: Decision, stuck_for: dict[str, float],
                   drains: dict[str, DrainEntry]) -> None:
    """Post what this decision is worth telling; `stuck_for` is how long each node has been
    saturated with no move (evaluate keeps it in Redis, like the proactive hold)."""
    if not enabled(rt):
        return
    post(rt, decision_notices(decision, stuck_for,
                              rt.config.notifications.stuck_after_seconds,
                              {node: d.since for node, d in drains.items()}))


def send_queued(rt: Runtime) -> dict[str, int]:
    """Send up to `BATCH` queued notices; the task's result counts them (no URL in it).
    One sender at a time cluster-wide (beat schedules it every interval, and a slow service
    must not pile runs up on the workers); what the time limit cuts short goes back."""
    if not enabled(rt):
        return {"sent": 0, "failed": 0, "dropped": 0}
    with rt.store.outbox.sending(SEND_LOCK_SECONDS) as mine:
        if not mine:
            return {"sent": 0, "failed": 0, "dropped": 0, "busy": 1}
        if rt.notifier is None:
            rt.notifier = Notifier(rt.config.notifications.urls)
        return _send(rt, rt.notifier, rt.store.outbox.take(BATCH))


def _send(rt: Runtime, notifier: Notifier, batch: list[Notice]) -> dict[str, int]:
    sent = failed = dropped = 0
    for index, notice in enumerate(batch):
        try:
            missed = notifier.send(notice)
        except SoftTimeLimitExceeded:
            for unsent in batch[index:]:
                rt.store.outbox.requeue(unsent)
            raise
        if not missed:
            sent += 1
            continue
        failed += 1
        if notice.attempts + 1 < ATTEMPTS:
            rt.store.outbox.requeue(dataclasses.replace(
                notice, attempts=notice.attempts + 1, pending=missed))
        else:
            dropped += 1
            log.warning("notification dropped after retries", extra=event_fields(
                kind=str(notice.kind), subject=notice.subject, attempts=ATTEMPTS))
    return {"sent": sent, "failed": failed, "dropped": dropped}
