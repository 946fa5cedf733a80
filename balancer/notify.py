"""Notifications: what an operator wants to hear about without watching a dashboard.

Sent on: a migration failed; a node stays saturated with no valid move for
`notifications.stuck_after_seconds`; a broken placement rule cannot be repaired; a drain
finished or is stuck; pause and resume. What to say is decided here, purely, from a decision
or an event; `state/outbox.py` throttles and queues it in Redis; the worker's
`balancer.notify` task sends it through Apprise (ntfy, Gotify, Matrix, Slack, e-mail, JSON
webhooks, ...), so a slow or dead notification service never delays a cycle.

Apprise URLs usually carry a token: they are `Secret`s, never logged (a failed delivery is
named by its position and scheme, `#2 ntfy`), never in a task's arguments or result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from balancer.config import Secret
from balancer.engine import Decision, DrainState, Trigger

log = logging.getLogger("balancer.notify")

#: A drain is announced finished once per drain, however long the node then stays drained.
ONCE_PER_DRAIN = 90 * 86400.0


class NoticeKind(StrEnum):
    MIGRATION_FAILED = "migration_failed"
    NODE_STUCK = "node_stuck"
    RULE_UNREPAIRABLE = "rule_unrepairable"
    DRAIN_FINISHED = "drain_finished"
    DRAIN_STUCK = "drain_stuck"
    PAUSED = "paused"
    RESUMED = "resumed"


#: Apprise's notify types: how a service colours or prioritises the message.
SEVERITY: dict[NoticeKind, str] = {
    NoticeKind.MIGRATION_FAILED: "failure",
    NoticeKind.NODE_STUCK: "warning",
    NoticeKind.RULE_UNREPAIRABLE: "warning",
    NoticeKind.DRAIN_FINISHED: "success",
    NoticeKind.DRAIN_STUCK: "warning",
    NoticeKind.PAUSED: "info",
    NoticeKind.RESUMED: "info",
}


@dataclass(frozen=True)
class Notice:
    """One message. `subject` (a node, a vmid, a rule) scopes the throttle: the same kind for
    the same subject is sent at most once per `notifications.throttle_seconds`, or per
    `throttle` when given (0: never throttled)."""

    kind: NoticeKind
    subject: str
    title: str
    body: str
    throttle: float | None = None
    attempts: int = 0
    #: URL positions (1-based) still owed this notice after a partial delivery; empty: all.
    pending: tuple[int, ...] = ()

    @property
    def throttle_key(self) -> str:
        return f"{self.kind}:{self.subject}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> Notice | None:
        try:
            d = json.loads(raw)
            return cls(NoticeKind(d["kind"]), str(d["subject"]), str(d["title"]),
                       str(d["body"]), d.get("throttle"), int(d.get("attempts", 0)),
                       tuple(int(i) for i in d.get("pending") or ()))
        except (ValueError, KeyError, TypeError):
            return None


# --- what to say (pure) -----------------------------------------------------------------------

def migration_failed(vmid: int, source: str | None, target: str | None, error: str) -> Notice:
    return Notice(NoticeKind.MIGRATION_FAILED, str(vmid),
                  f"pve-balancer: migration of vm {vmid} failed",
                  f"vm {vmid} {source or '?'} -> {target or '?'}: {error}. The balancer backs "
                  "off from this VM and tries another.")


def paused(description: str) -> Notice:
    return Notice(NoticeKind.PAUSED, "cluster", "pve-balancer paused",
                  f"The balancer is {description}. No new migration starts until resume.",
                  throttle=0)


def resumed(by: str) -> Notice:
    return Notice(NoticeKind.RESUMED, "cluster", "pve-balancer resumed",
                  f"Resumed by {by}: migrations may start again.", throttle=0)


def saturated_without_move(decision: Decision, quiet: bool) -> set[str]:
    """Nodes a saturation trigger fired on in a decision that moves nothing. None in quiet
    hours: holding back is what the operator asked for, not a dead end."""
    if decision.move is not None or quiet:
        return set()
    return {f.node for f in decision.fired if f.trigger in (Trigger.CPU, Trigger.MEMORY)}


def decision_notices(decision: Decision, stuck_for: Mapping[str, float], stuck_after: float,
                     drain_since: Mapping[str, float]) -> list[Notice]:
    """What one decision is worth telling: nodes stuck saturated long enough, rules that
    could not be repaired, drains that finished or got stuck."""
    notices = [
        Notice(NoticeKind.NODE_STUCK, node, f"pve-balancer: {node} saturated, no valid move",
               f"{node} has been above a threshold for {held:.0f} s and no VM can move off "
               f"it. {decision.explanation[0]}")
        for node, held in sorted(stuck_for.items()) if held >= stuck_after
    ]
    notices += [
        Notice(NoticeKind.RULE_UNREPAIRABLE, f"{v.rule}:{v.label}:{v.node}",
               f"pve-balancer: broken {v.rule} rule not repaired",
               f"{v.describe()}; no valid move repairs it (it is reported, never forced).")
        for v in decision.unrepaired
    ]
    for drain in decision.drains:
        if drain.state is DrainState.EMPTY:
            since = drain_since.get(drain.node)
            # Once per operator's drain (its start names it); an HA-maintenance evacuation
            # has no start of ours to name, so at most once per throttle period.
            once = since is not None and drain.origin == "operator"
            notices.append(Notice(
                NoticeKind.DRAIN_FINISHED, f"{drain.node}:{since if once else 'ha'}",
                f"pve-balancer: {drain.node} drained",
                f"{drain.node} has no running VM left ({len(drain.left)} stopped VMs or "
                "containers stay).", throttle=ONCE_PER_DRAIN if once else None))
        elif drain.state is DrainState.STUCK:
            notices.append(Notice(NoticeKind.DRAIN_STUCK, drain.node,
                                  f"pve-balancer: drain of {drain.node} stuck",
                                  drain.describe()))
    return notices


# --- sending (the worker's side) --------------------------------------------------------------

class Notifier:
    """Apprise, one instance per URL so a failure can be named without the URL."""

    def __init__(self, urls: tuple[Secret, ...]) -> None:
        import apprise  # imported here: only a worker with notifications configured needs it

        # Apprise's own log lines may quote a URL (and its token): keep them out.
        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        self._services: list[tuple[int, str, Any]] = []
        for index, url in enumerate(urls, start=1):
            service = apprise.Apprise()
            label = f"#{index} {url.reveal().split('://', 1)[0]}"
            if not service.add(url.reveal()):
                log.error("notification URL not understood by Apprise; check its form",
                          extra={"fields": {"url": label}})
                continue
            self._services.append((index, label, service))

    def send(self, notice: Notice) -> tuple[int, ...]:
        """Deliver to every URL still owed the notice; the positions that failed (all of
        them when none is usable), so a retry goes only where it did not arrive."""
        owed = [s for s in self._services if not notice.pending or s[0] in notice.pending]
        if not owed:
            return notice.pending or (0,)
        failed = []
        for index, label, service in owed:
            try:
                ok = bool(service.notify(title=notice.title, body=notice.body,
                                         notify_type=SEVERITY[notice.kind]))
            except SoftTimeLimitExceeded:
                raise  # the task's time is up: the caller puts back what is unsent
            except Exception:  # a plugin's bug must not take the worker's task down
                ok = False
            if not ok:
                failed.append(index)
                log.warning("notification not delivered", extra={"fields": {
                    "url": label, "kind": str(notice.kind), "subject": notice.subject}})
        return tuple(failed)
