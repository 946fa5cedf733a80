"""`reconcile.settle`: how a migration nobody saw end is read from PVE, one row per outcome
(issue 14). Pure: the guest's placement and PVE's task list are given, not served. The
runtime tests (`tests/reliability/test_migration_steps.py`) show the same outcomes end to end
against pvesim and Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from balancer.migrations import EventKind, MigrationRef
from balancer.model import Guest, GuestType
from balancer.pve.errors import PveError
from balancer.runtime.reconcile import TaskLookup, settle

UPID = "UPID:pve1:00001234:00005678:65000000:qmigrate:202:pve-balancer@pve!tok:"
REF = MigrationRef(vmid=202, source="pve1", target="pve3", decision_id="d1",
                   requested_at=1000.0)


def on(node: str) -> Guest:
    return Guest(vmid=202, name="web", type=GuestType.QEMU, node=node, status="running")


def task(status: str | None) -> TaskLookup:
    return lambda: (UPID, status)


def no_task() -> None:
    return None


def unreadable() -> tuple[str, str | None]:
    raise PveError("PVE API unreachable")


def never_asked() -> tuple[str, str | None]:
    raise AssertionError("the task list is read only when the VM stayed on its source")


@dataclass(frozen=True)
class Case:
    name: str
    guest: Guest | None
    lookup: Callable[[], tuple[str, str | None] | None]
    kind: EventKind
    outcome: str
    upid: str | None


CASES = [
    Case("the vm is gone", None, never_asked, EventKind.ABORTED, "vm 202 no longer exists",
         None),
    Case("the vm runs on the target", on("pve3"), task("OK"), EventKind.SUCCEEDED, "OK", UPID),
    Case("on the target, task list unreadable: still a success", on("pve3"), unreadable,
         EventKind.SUCCEEDED, "OK", None),
    Case("someone else moved it", on("pve2"), never_asked, EventKind.ABORTED,
         "vm 202 was moved to pve2 by someone else", None),
    Case("stayed, PVE's tasks unreadable", on("pve1"), unreadable, EventKind.FAILED,
         "outcome unknown (cannot read PVE's tasks: PVE API unreachable); vm stayed on pve1",
         None),
    Case("stayed, no task was started", on("pve1"), no_task, EventKind.ABORTED,
         "no migration task was started", None),
    Case("stayed, the task failed", on("pve1"), task("migration aborted"), EventKind.FAILED,
         "migration aborted", UPID),
    Case("stayed although the task said OK", on("pve1"), task("OK"), EventKind.FAILED,
         "vm did not move", UPID),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_where_the_vm_is_says_how_it_ended(case: Case) -> None:
    end = settle(REF, case.guest, case.lookup)
    assert (end.kind, end.outcome, end.upid) == (case.kind, case.outcome, case.upid)


def test_a_known_upid_is_kept_without_asking() -> None:
    end = settle(MigrationRef(**{**REF.__dict__, "upid": UPID}), on("pve3"), never_asked)
    assert (end.kind, end.upid) == (EventKind.SUCCEEDED, UPID)


def test_every_end_kind_is_reachable() -> None:
    assert {c.kind for c in CASES} == {EventKind.SUCCEEDED, EventKind.FAILED,
                                       EventKind.ABORTED}
