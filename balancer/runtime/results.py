"""What each task returns, as typed records: `CycleResult` for evaluate, `StepResult` for the
migrate and poll steps. Celery stores `to_dict()` (JSON, no secrets); Flower shows it.

`state` is always one of a fixed set of words (a stable token scripts can match); the
sentence saying why goes in `reason`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from balancer.engine import Decision
from balancer.migrations import MigrationEvent, MigrationRef


class StepState(StrEnum):
    #: migrate: PVE accepted the migration; a poll follows it.
    STARTED = "started"
    #: migrate: the POST's answer was lost; the lock stays until reconciliation reads PVE.
    UNCONFIRMED = "unconfirmed"
    #: migrate: PVE started it after our lock was lost (PVE's task list will show it).
    ORPHANED = "orphaned"
    #: migrate: the lock was no longer ours, so nothing was sent.
    ABANDONED = "abandoned"
    #: poll (or a redelivered migrate): the migration runs and is followed.
    FOLLOWING = "following"
    #: migrate redelivered after its follower died: this task took the following over.
    ADOPTED = "adopted"
    #: poll: the migration's end is handled elsewhere; this message has nothing left to do.
    DONE = "done"
    #: poll: a redelivered copy of an earlier poll; the newer loop goes on.
    DUPLICATE = "duplicate"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class StepResult:
    state: StepState
    vmid: int | None = None
    source: str | None = None
    target: str | None = None
    upid: str | None = None
    decision_id: str | None = None
    #: Why, in words.
    reason: str | None = None
    #: How an ended migration ended (PVE's exit status, our error, why it was aborted).
    outcome: str | None = None
    duration: float | None = None
    backoff: float | None = None
    recovered: str | None = None

    @classmethod
    def about(cls, state: StepState, ref: MigrationRef | None = None, upid: str | None = None,
              reason: str | None = None) -> StepResult:
        if ref is None:
            return cls(state=state, upid=upid, reason=reason)
        return cls(state=state, vmid=ref.vmid, source=ref.source, target=ref.target,
                   upid=upid or ref.upid, decision_id=ref.decision_id, reason=reason)

    @classmethod
    def ended(cls, event: MigrationEvent) -> StepResult:
        """The result of the step that recorded `event` (an end)."""
        return cls(state=StepState(str(event.kind)), vmid=event.vmid, source=event.source,
                   target=event.target, upid=event.upid, decision_id=event.decision_id,
                   outcome=event.outcome, duration=event.duration, backoff=event.backoff,
                   recovered=event.recovered)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": str(self.state)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "state" and value is not None:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class CycleResult:
    """One evaluate: a decision (`none`, `migrate`) or `skipped` with the reason. The same
    fields as `plan --json`, plus the decision id and dry-run flag."""

    action: str
    reason: str | None
    explanation: tuple[str, ...]
    vmid: int | None = None
    source: str | None = None
    target: str | None = None
    projected: dict[str, Any] | None = None
    #: Why the cycle decided nothing (a stable metric label), when `action` is `skipped`.
    skip: str | None = None
    decision_id: str | None = None
    dry_run: bool | None = None
    #: Broken placement rules found this cycle (`Violation.to_dict()`), repaired or not.
    violations: tuple[dict[str, Any], ...] = ()
    #: Every drained node's progress (`DrainProgress.to_dict()`).
    drains: tuple[dict[str, Any], ...] = ()

    @classmethod
    def decided(cls, decision: Decision, decision_id: str, dry_run: bool) -> CycleResult:
        d = decision.to_dict()
        return cls(action=d["action"], reason=d["reason"], explanation=tuple(d["explanation"]),
                   vmid=d["vmid"], source=d["source"], target=d["target"],
                   projected=d["projected"], decision_id=decision_id, dry_run=dry_run,
                   violations=tuple(d["violations"]), drains=tuple(d["drains"]))

    @classmethod
    def skipped(cls, kind: str, reason: str) -> CycleResult:
        return cls(action="skipped", reason=reason, explanation=(reason,), skip=kind)

    @property
    def summary(self) -> str:
        return self.explanation[0] if self.explanation else ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["explanation"] = list(self.explanation)
        out["violations"] = list(self.violations)
        out["drains"] = list(self.drains)
        if self.action == "skipped":
            del out["projected"], out["decision_id"], out["dry_run"], out["violations"]
            del out["drains"]
        else:
            del out["skip"]
        return out
