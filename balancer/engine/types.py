"""What goes into the engine and what comes out: frozen values, no behaviour beyond rendering.

`Decision` keeps every verdict as data (kube's `NodeToStatus`) and a bounded list of human
lines; `plan`, logs and Flower render the same object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from balancer.config import BalancingConfig
from balancer.model import ClusterSnapshot, CpuReading

if TYPE_CHECKING:  # rules.py builds Rejections: a runtime import would be a cycle
    from .rules import Rule

_Name = TypeVar("_Name", bound=str)


class Trigger(StrEnum):
    """Why a move was made: the rule that fired on the source."""

    #: An operator drained the node (or it is in PVE HA maintenance and
    #: `evacuate_ha_maintenance` is on): its running VMs leave, one per cycle.
    DRAIN = "drain"
    #: A broken rule nobody else enforces (ProxLB anti-affinity, pin) is repaired.
    RULE = "rule"
    CPU = "cpu"
    MEMORY = "memory"
    PROACTIVE = "proactive"


@dataclass(frozen=True)
class EngineInput:
    snapshot: ClusterSnapshot
    cpu: Mapping[str, CpuReading]
    blocked: Mapping[int, str]
    config: BalancingConfig
    seed: int = 0
    #: Targets PVE's migrate precondition refused for a VM (vmid -> node -> reason).
    refused_targets: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    #: Seconds each node has stayed above the proactive threshold over consecutive cycles
    #: (the runtime keeps it in Redis). None: not tracked by this caller (a what-if plan from
    #: a saved snapshot, a unit test), so the hold is not applied and the explanation says so.
    proactive_held: Mapping[str, float] | None = None
    #: Each running guest's CPU averaged over the EMA window (the same unit as `Guest.cpu`),
    #: kept in Redis by the runtime. Candidate choice, relief and target projections use it
    #: instead of the last sample. None: the last sample is all there is.
    guest_cpu: Mapping[int, float] | None = None
    #: Nodes an operator drained (node -> why), kept in Redis by the runtime.
    drained: Mapping[str, str] = field(default_factory=dict)
    #: A quiet-hours window is open (its description): only drains may move.
    quiet: str | None = None
    #: Where each VM was moved away from, and when (vmid -> node -> epoch seconds), kept in
    #: Redis by the runtime. Targets a VM left within `return_window_seconds` rank last.
    left_recently: Mapping[int, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Utilisation:
    """Node load as shares: `cpu` of its threads, `memory` of its RAM."""

    cpu: float
    memory: float

    def to_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "memory": self.memory}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One failed check, with the numbers behind it. `message` is the full human sentence."""

    rule: Rule
    subject: str
    message: str
    observed: float | None = None
    limit: float | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Move:
    vmid: int
    name: str
    source: str
    target: str
    reason: Trigger
    source_before: Utilisation
    source_after: Utilisation
    target_before: Utilisation
    target_after: Utilisation
    cpu_share_source: float
    cpu_share_target: float


@dataclass(frozen=True, slots=True)
class TargetVerdict:
    """One node's answer for one candidate; `rejection is None` means the move is valid."""

    node: str
    rejection: Rejection | None = None
    #: Valid, but ranked after every target without a demotion, and why (`recently_left`).
    demoted: Rejection | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None


@dataclass(frozen=True, slots=True)
class TriggerFired:
    """A trigger fired on a node: `observed` went above `limit`."""

    trigger: Trigger
    node: str
    observed: float
    limit: float
    note: str = ""


TargetVerdicts = tuple[TargetVerdict, ...]


@dataclass(frozen=True)
class CandidateVerdict:
    """A guest considered on a source: why it is not a candidate, or every target's verdict.

    `target_verdicts` may be a zero-argument function: a guest that provably fits nowhere is
    not checked pair by pair until someone reads `targets` (which then runs every filter).
    """

    vmid: int
    name: str
    source: str
    trigger: Trigger
    rejections: tuple[Rejection, ...] = ()
    target: str | None = None
    target_verdicts: TargetVerdicts | Callable[[], TargetVerdicts] = field(
        default=(), repr=False, compare=False)

    @cached_property
    def targets(self) -> TargetVerdicts:
        """Every other node's verdict: node-only rejections first, then per-pair ones."""
        found = self.target_verdicts
        return found() if callable(found) else found

    @property
    def deferred(self) -> bool:
        """True while the per-target verdicts are still to be computed."""
        return callable(self.target_verdicts) and "targets" not in self.__dict__

    @property
    def eligible(self) -> bool:
        return not self.rejections

    @property
    def valid_targets(self) -> int:
        return sum(1 for verdict in self.targets if verdict.ok)

    def summary(self) -> str:
        """One line: either the guest's own failures or a kube FitError-style histogram."""
        if self.rejections:
            reasons = "; ".join(r.message for r in self.rejections)
            return f"vm {self.vmid} on {self.source}: not a candidate: {reasons}"
        head = f"vm {self.vmid}: {self.valid_targets}/{len(self.targets)} targets valid"
        counts = Counter(v.rejection.rule for v in self.targets if v.rejection is not None)
        histogram = ", ".join(f"{n} {rule}" for rule, n in _by_count(counts))
        if self.target is not None:
            line = f"{head}; chose {self.target}" + (f" (rejected: {histogram})" if counts else "")
            passed_over = []
            for v in self.targets:
                if v.demoted is None:
                    continue
                if v.node == self.target:  # only nodes it left were valid: it goes back
                    line += f"; goes back: {v.demoted.message}"
                else:
                    passed_over.append(v.demoted.message)
            return line + (f"; ranked last: {'; '.join(passed_over)}" if passed_over else "")
        return f"{head}: {histogram}" if counts else f"{head}: no other node"


def _by_count(counts: Counter[_Name]) -> list[tuple[_Name, int]]:
    """Most frequent reason first, then by name, so the line is stable."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class Violation:
    """A placement rule broken right now: `rule` is `anti_affinity` or `pin`."""

    rule: str
    label: str
    node: str
    vmids: tuple[int, ...]

    def describe(self) -> str:
        guests = ", ".join(f"vm {v}" for v in self.vmids)
        if self.rule == "pin":
            return f"{guests} runs on {self.node}, outside {self.label}"
        return f"{guests} share {self.node} against {self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "label": self.label, "node": self.node,
                "vmids": list(self.vmids), "text": self.describe()}


class DrainState(StrEnum):
    """Where a drain stands after this decision."""

    #: No running QEMU VM is left on the node (stopped VMs and containers stay, listed).
    EMPTY = "empty"
    #: This decision moves one of its VMs.
    MOVING = "moving"
    #: Its VMs wait for another drained node's move (one move per cycle).
    WAITING = "waiting"
    #: Running VMs are left and none of them can go anywhere now.
    STUCK = "stuck"
    #: The node is offline or gone: nothing can leave it through a live migration.
    OFFLINE = "offline"


@dataclass(frozen=True)
class Leftover:
    """A guest a drain leaves on its node, and why."""

    vmid: int
    name: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"vmid": self.vmid, "name": self.name, "why": self.why}


@dataclass(frozen=True)
class DrainProgress:
    """One drained node as this decision saw it."""

    node: str
    reason: str
    state: DrainState
    #: Running QEMU VMs still on the node (the one moving now included).
    running: int
    #: Running VMs that cannot leave now, each with its reason (known when the drain did
    #: not move: a moving drain stops at the first VM it can place).
    stuck: tuple[Leftover, ...] = ()
    #: Stopped VMs, templates and containers: listed, never moved (no live migration).
    left: tuple[Leftover, ...] = ()
    #: "operator" (`pve-balancer drain`) or "ha_maintenance" (evacuate_ha_maintenance).
    origin: str = "operator"

    def describe(self) -> str:
        head = f"drain {self.node}: {self.state}, {self.running} running VMs left"
        if self.stuck:
            head += "; cannot leave: " + "; ".join(
                f"vm {s.vmid} ({s.why})" for s in self.stuck[:MAX_LEFTOVERS_NAMED])
            if len(self.stuck) > MAX_LEFTOVERS_NAMED:
                head += f" and {len(self.stuck) - MAX_LEFTOVERS_NAMED} more"
        if self.left:
            head += f"; {len(self.left)} stopped VMs or containers stay"
        return head

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "reason": self.reason, "state": str(self.state),
                "running": self.running, "stuck": [s.to_dict() for s in self.stuck],
                "left": [s.to_dict() for s in self.left], "origin": self.origin,
                "text": self.describe()}


#: Stuck VMs named in a drain's one-line description (all of them are in `to_dict`).
MAX_LEFTOVERS_NAMED = 3


@dataclass(frozen=True)
class Decision:
    """At most one move, plus why everything else was not chosen."""

    move: Move | None
    explanation: tuple[str, ...]
    fired: tuple[TriggerFired, ...] = ()
    skipped_sources: tuple[Rejection, ...] = ()
    candidates: tuple[CandidateVerdict, ...] = field(default=(), repr=False)
    #: Every rule violation found, repaired by this move or not (`plan` lists them all).
    violations: tuple[Violation, ...] = ()
    #: Every drained node's progress (`drains`, `status` and `drain --wait` show it).
    drains: tuple[DrainProgress, ...] = ()
    #: Violations no valid move repairs this cycle (or `repair_rules: false`): notified.
    unrepaired: tuple[Violation, ...] = ()

    def rejections_by_rule(self, limit: int = 20) -> dict[str, dict[str, dict[str, Any]]]:
        """What was turned down, grouped by the rule that did it, for people to scan:
        `{"sources"|"candidates"|"targets": {rule: {"count", "items"}}}`, at most `limit`
        items per rule. Target verdicts never computed (a guest that fits nowhere, pruned)
        are not computed here either."""
        groups: dict[str, dict[str, dict[str, Any]]] = {
            "sources": {}, "candidates": {}, "targets": {}}

        def add(kind: str, rule: str, item: str) -> None:
            entry = groups[kind].setdefault(rule, {"count": 0, "items": []})
            entry["count"] += 1
            if len(entry["items"]) < limit:
                entry["items"].append(item)

        for rejection in self.skipped_sources:
            add("sources", str(rejection.rule), rejection.message)
        for verdict in self.candidates:
            for rejection in verdict.rejections:
                add("candidates", str(rejection.rule), rejection.message)
            if verdict.rejections or verdict.deferred:
                continue
            for target in verdict.targets:
                turned_down = target.rejection or (
                    target.demoted if target.node != verdict.target else None)
                if turned_down is not None and turned_down.rule != "same_node":
                    add("targets", str(turned_down.rule),
                        f"vm {verdict.vmid} -> {turned_down.message}")
        return groups

    @property
    def action(self) -> Literal["migrate", "none"]:
        return "migrate" if self.move is not None else "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: the move (or None fields) and the human lines."""
        move = self.move
        return {
            "action": self.action,
            "vmid": move.vmid if move else None,
            "source": move.source if move else None,
            "target": move.target if move else None,
            "reason": str(move.reason) if move else None,
            "explanation": list(self.explanation),
            "projected": _projected(move) if move else None,
            "violations": [v.to_dict() for v in self.violations],
            "drains": [d.to_dict() for d in self.drains],
        }


def _projected(move: Move) -> dict[str, Any]:
    return {
        "source": {"node": move.source, "before": move.source_before.to_dict(),
                   "after": move.source_after.to_dict()},
        "target": {"node": move.target, "before": move.target_before.to_dict(),
                   "after": move.target_after.to_dict()},
    }
