"""`rebuild`: the one place that folds migration events into migrations (issue 14). Table-
driven and pure; the runtime tests show the events are written this way."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from balancer.migrations import EventKind, Migration, MigrationEvent, MigrationRef, rebuild

K = EventKind
REF = MigrationRef(vmid=202, source="pve1", target="pve3", decision_id="d1", reason="cpu",
                   cpu_share_source=0.25, cpu_share_target=0.125)
UPID = "UPID:pve1:00001234:00005678:65000000:qmigrate:202:pve-balancer@pve!tok:"


def ev(kind: EventKind, at: float, ref: MigrationRef = REF, **details: object) -> MigrationEvent:
    return MigrationEvent.of(kind, ref, at, **details)


STARTED = MigrationRef(**{**REF.__dict__, "upid": UPID})


@dataclass(frozen=True)
class Case:
    name: str
    oldest_first: list[MigrationEvent]
    state: EventKind
    outcome: str | None
    upid: str | None
    ended_at: float | None


CASES = [
    Case("requested only: open", [ev(K.REQUESTED, 10)], K.REQUESTED, None, None, None),
    Case("started: open, UPID known", [ev(K.REQUESTED, 10), ev(K.STARTED, 12, STARTED)],
         K.STARTED, None, UPID, None),
    Case("succeeded", [ev(K.REQUESTED, 10), ev(K.STARTED, 12, STARTED),
                       ev(K.SUCCEEDED, 40, STARTED, outcome="OK", duration=28.0)],
         K.SUCCEEDED, "OK", UPID, 40),
    Case("failed with PVE's exit status",
         [ev(K.REQUESTED, 10), ev(K.STARTED, 12, STARTED),
          ev(K.FAILED, 30, STARTED, outcome="migration aborted", backoff=60.0)],
         K.FAILED, "migration aborted", UPID, 30),
    Case("aborted before the POST", [ev(K.REQUESTED, 10),
                                     ev(K.ABORTED, 11, outcome="vm 202 is stopped")],
         K.ABORTED, "vm 202 is stopped", None, 11),
    Case("unconfirmed stays open for reconciliation",
         [ev(K.REQUESTED, 10), ev(K.UNCONFIRMED, 11, outcome="timeout")],
         K.UNCONFIRMED, None, None, None),
    Case("orphaned stays open: PVE's task list tells the end",
         [ev(K.REQUESTED, 10), ev(K.ORPHANED, 11, STARTED)], K.ORPHANED, None, UPID, None),
    Case("the first end wins: a late second end changes nothing",
         [ev(K.REQUESTED, 10), ev(K.ABORTED, 11, outcome="moved by someone else"),
          ev(K.SUCCEEDED, 50, STARTED, outcome="OK")],
         K.ABORTED, "moved by someone else", None, 11),
    Case("a stale 'started' after the end does not re-open it",
         [ev(K.REQUESTED, 10), ev(K.ABORTED, 11, outcome="lock lost"),
          ev(K.STARTED, 12, STARTED)], K.ABORTED, "lock lost", None, 11),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_migration_folds_to_its_state(case: Case) -> None:
    (m,) = rebuild(reversed(case.oldest_first))  # the history lists newest first
    assert (m.state, m.outcome, m.upid, m.ended_at) == (
        case.state, case.outcome, case.upid, case.ended_at)
    assert m.ended == case.state.ends
    assert (m.vmid, m.source, m.target, m.decision_id, m.reason) == (
        202, "pve1", "pve3", "d1", "cpu")
    assert m.requested_at == 10
    assert (m.cpu_share_source, m.cpu_share_target) == (0.25, 0.125), "the end needs them"


def test_the_reference_rebuilt_is_the_one_recorded() -> None:
    (m,) = rebuild(reversed([ev(K.REQUESTED, 10), ev(K.STARTED, 12, STARTED)]))
    assert m.ref == MigrationRef(**{**STARTED.__dict__, "requested_at": 10.0,
                                    "started_at": 12.0})


def test_migrations_are_grouped_by_decision_else_by_upid_newest_first() -> None:
    other = MigrationRef(vmid=300, source="pve2", target="pve1", decision_id="d2")
    recovered = MigrationEvent(K.SUCCEEDED, vmid=400, at=5.0, source="pve3", upid="UPID:x:",
                               outcome="OK", recovered="read back from PVE")
    events = [ev(K.REQUESTED, 10), recovered, ev(K.REQUESTED, 20, other),
              ev(K.SUCCEEDED, 30, STARTED, outcome="OK"), ev(K.ABORTED, 25, other, outcome="x")]
    found = rebuild(sorted(events, key=lambda e: e.at, reverse=True))
    assert [(m.key, m.vmid, m.state) for m in found] == [
        ("d2", 300, K.ABORTED), ("d1", 202, K.SUCCEEDED), ("upid:UPID:x:", 400, K.SUCCEEDED)]
    assert found[2].recovered == "read back from PVE"


def test_history_rows_say_the_outcome_in_words() -> None:
    rows = [m.row() for m in rebuild(reversed([
        ev(K.REQUESTED, 10), ev(K.STARTED, 12, STARTED),
        ev(K.FAILED, 30, STARTED, outcome="migration aborted", duration=18.0)]))]
    assert rows == [{"vmid": 202, "source": "pve1", "target": "pve3", "reason": "cpu",
                     "requested_at": 10.0, "upid": UPID, "outcome": "failed: migration aborted",
                     "duration": 18.0}]
    assert Migration(key="k", vmid=1, source=None, target=None,
                     state=K.STARTED).summary() == "in progress"


@pytest.mark.parametrize("raw", [
    {"event": "teleported", "vmid": 1}, {"event": "started"}, {"event": "started", "vmid": "1"},
    {"event": "started", "vmid": True}, {},
], ids=["unknown kind", "no vmid", "vmid as text", "vmid as bool", "empty"])
def test_an_entry_that_is_no_event_reads_as_none(raw: dict[str, object]) -> None:
    assert MigrationEvent.from_json(raw) is None


def test_json_round_trip_and_older_entries() -> None:
    event = ev(K.FAILED, 30, STARTED, outcome="x", backoff=60.0, duration=18.0)
    assert MigrationEvent.from_json(event.to_json()) == event
    assert event.to_json()["event"] == "failed", "stored as before: the kind under 'event'"
    # Written by an older version: extra keys are ignored, a bad number is dropped.
    old = {"event": "succeeded", "vmid": 7, "at": 3, "duration": "n/a", "phase": 2}
    assert MigrationEvent.from_json(old) == MigrationEvent(K.SUCCEEDED, vmid=7, at=3.0)
