"""A migration's life as typed records: the reference every step passes along, the events
written to the history, and the one function that rebuilds migrations from those events.

Every writer (evaluate, migrate, the follower, reconciliation) records a `MigrationEvent`;
every reader (reconciliation, `status`, `history`, the exporter) reads `Migration`s rebuilt by
`rebuild`, so what counts as "ended" and which outcome wins is decided in one place.
Pure: no Redis, no PVE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard


class EventKind(StrEnum):
    """What happened to a migration. The values are stored in Redis and shown to people."""

    #: Evaluate took the migration lock and dispatched `migrate` (decision id known).
    REQUESTED = "requested"
    #: PVE accepted the migrate POST; its task's UPID is known.
    STARTED = "started"
    #: The POST's answer was lost: PVE may or may not run it (reconciliation decides).
    UNCONFIRMED = "unconfirmed"
    #: PVE started it after our lock was lost; its task list shows how it ends.
    ORPHANED = "orphaned"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def ends(self) -> bool:
        return self in ENDS


#: The kinds that end a migration. The first one recorded wins; nothing re-opens it.
ENDS = frozenset({EventKind.SUCCEEDED, EventKind.FAILED, EventKind.ABORTED})


@dataclass(frozen=True)
class MigrationRef:
    """One migration, as every step after the decision needs it: who moves where, which
    decision asked for it, which PVE task carries it, and what its success shifts in the CPU
    averages. Passed whole instead of long argument lists."""

    vmid: int
    source: str | None
    target: str | None
    decision_id: str | None = None
    upid: str | None = None
    #: Our `hamigrate` request's UPID when `upid` is HA's own `qmigrate`.
    ha_request: str | None = None
    #: The trigger that asked for the move (`cpu`, `memory`, ...).
    reason: str | None = None
    requested_at: float | None = None
    started_at: float | None = None
    cpu_share_source: float = 0.0
    cpu_share_target: float = 0.0

    @classmethod
    def of(cls, record: Any) -> MigrationRef:
        """The reference a record with the same field names describes (the lock's info, a
        migration rebuilt from events): one place that knows which fields a reference has."""
        return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})

    @property
    def key(self) -> str | None:
        """What identifies this migration's end in the history: a migration ends once."""
        return end_key(self.decision_id, self.upid)

    def with_upid(self, upid: str | None) -> MigrationRef:
        return self if upid is None or upid == self.upid else dataclasses.replace(self, upid=upid)


def end_key(decision_id: str | None, upid: str | None) -> str | None:
    if decision_id:
        return decision_id
    return f"upid:{upid}" if upid else None


@dataclass(frozen=True)
class MigrationEvent:
    """One line of a migration's history. Stored flat as JSON (`event` holds the kind)."""

    kind: EventKind
    vmid: int
    at: float
    source: str | None = None
    target: str | None = None
    decision_id: str | None = None
    upid: str | None = None
    ha_request: str | None = None
    #: The trigger (on `requested`).
    reason: str | None = None
    #: PVE's exit status, our error text or why it was aborted (on ends and `unconfirmed`).
    outcome: str | None = None
    duration: float | None = None
    #: Seconds of back-off the failure earned the VM (on `failed`).
    backoff: float | None = None
    #: How an end nobody saw happen was learned afterwards (reconciliation).
    recovered: str | None = None
    cpu_share_source: float | None = None
    cpu_share_target: float | None = None

    @classmethod
    def of(cls, kind: EventKind, ref: MigrationRef, at: float, **details: Any) -> MigrationEvent:
        """An event about `ref`, carrying its identity; the request also carries what the
        end needs if the lock is lost on the way (the trigger, the CPU shares)."""
        shares = ({"reason": ref.reason, "cpu_share_source": ref.cpu_share_source,
                   "cpu_share_target": ref.cpu_share_target}
                  if kind is EventKind.REQUESTED else {})
        return cls(kind=kind, vmid=ref.vmid, at=at, source=ref.source, target=ref.target,
                   decision_id=ref.decision_id, upid=ref.upid, ha_request=ref.ha_request,
                   **{**shares, **details})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": str(self.kind)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> MigrationEvent | None:
        """The event, or None for an entry that is not one (unknown kind, no VM id): the
        history is shared state, and one bad line must not hide the others."""
        try:
            kind = EventKind(str(raw.get("event")))
        except ValueError:
            return None
        vmid = raw.get("vmid")
        if isinstance(vmid, bool) or not isinstance(vmid, int):
            return None
        known = {f.name for f in dataclasses.fields(cls)} - {"kind", "vmid", "at"}
        values = {name: raw[name] for name in known if raw.get(name) is not None}
        for name in ("source", "target", "decision_id", "upid", "ha_request", "reason",
                     "outcome", "recovered"):
            if name in values:
                values[name] = str(values[name])
        for name in ("duration", "backoff", "cpu_share_source", "cpu_share_target"):
            if name in values and not _is_number(values[name]):
                del values[name]
        at = raw.get("at")
        return cls(kind=kind, vmid=vmid, at=float(at) if _is_number(at) else 0.0, **values)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Migration:
    """A migration as its events tell it: where it stands and, once ended, how it ended."""

    key: str
    vmid: int
    source: str | None
    target: str | None
    #: The newest state: an end kind once ended, else the newest event's kind.
    state: EventKind
    decision_id: str | None = None
    upid: str | None = None
    ha_request: str | None = None
    reason: str | None = None
    requested_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    duration: float | None = None
    recovered: str | None = None
    cpu_share_source: float = 0.0
    cpu_share_target: float = 0.0
    events: tuple[MigrationEvent, ...] = field(default=(), repr=False)

    @property
    def ended(self) -> bool:
        return self.state.ends

    @property
    def ref(self) -> MigrationRef:
        return MigrationRef.of(self)

    def summary(self) -> str:
        """The outcome in a few words, for the history table."""
        if not self.ended:
            return "in progress"
        if self.state is EventKind.SUCCEEDED:
            return str(self.state)
        return f"{self.state}: {self.outcome}" if self.outcome else str(self.state)

    def row(self) -> dict[str, Any]:
        """The `history --json` row (the field names are a contract)."""
        return {"vmid": self.vmid, "source": self.source, "target": self.target,
                "reason": self.reason, "requested_at": self.requested_at, "upid": self.upid,
                "outcome": self.summary(), "duration": self.duration}


def rebuild(events: Iterable[MigrationEvent]) -> list[Migration]:
    """Fold events (newest first, as the history lists them) into migrations, newest first.

    Events belong together by decision id, else by UPID (a migration read back from PVE has
    no decision). Facts accumulate oldest to newest (a later event adds the UPID); the first
    end recorded is the end, and no later event (a stale "started") re-opens or changes it."""
    groups: dict[str, list[MigrationEvent]] = {}
    for index, event in enumerate(events):
        key = end_key(event.decision_id, event.upid) or f"event:{index}"
        groups.setdefault(key, []).append(event)
    migrations = [_fold(key, list(reversed(group))) for key, group in groups.items()]
    return sorted(migrations, key=lambda m: _first_at(m), reverse=True)


def _first_at(m: Migration) -> float:
    return m.requested_at if m.requested_at is not None else (m.events[0].at if m.events else 0)


def _fold(key: str, oldest_first: list[MigrationEvent]) -> Migration:
    first = oldest_first[0]
    facts: dict[str, Any] = {"key": key, "vmid": first.vmid, "source": None, "target": None,
                             "state": first.kind, "events": tuple(oldest_first)}
    ended = False
    for event in oldest_first:
        if ended:
            break
        for name in ("source", "target", "decision_id", "upid", "ha_request", "reason",
                     "cpu_share_source", "cpu_share_target"):
            value = getattr(event, name)
            if value is not None:
                facts[name] = value
        facts["state"] = event.kind
        if event.kind is EventKind.REQUESTED:
            facts["requested_at"] = event.at
        elif event.kind is EventKind.STARTED:
            facts["started_at"] = event.at
        if event.kind.ends:
            ended = True
            facts.update(ended_at=event.at, outcome=event.outcome, duration=event.duration,
                         recovered=event.recovered)
    if "requested_at" not in facts:
        facts["requested_at"] = first.at
    return Migration(**facts)
