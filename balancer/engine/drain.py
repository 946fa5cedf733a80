"""Drain: empty a node an operator named, one live migration per cycle, before anything else.

PVE's HA maintenance mode moves only HA resources; a drained node loses every running QEMU VM
that can go somewhere. Each goes to the best target that passes every filter and PVE's
precondition, but not the no-flip midpoint: a drain is meant to empty the node, not to even
it out. The biggest VM goes first (first-fit decreasing: it needs the most room, and there is
most room before the others land). A VM that fits nowhere, or may not move at all, is listed
with its reason and never forced; stopped VMs, templates and containers are listed, not moved.
"""

from __future__ import annotations

from collections import Counter

from balancer.model import Guest, GuestType, Node

from .context import Context
from .eligibility import guest_rejections
from .explain import Report
from .pipeline import Pipeline
from .rules import Rule, reject
from .types import (
    CandidateVerdict,
    DrainProgress,
    DrainState,
    Leftover,
    Move,
    Rejection,
    Trigger,
    TriggerFired,
)

#: Guest checks that say "not a running VM": such guests are listed as staying, not stuck.
_NOT_LIVE = frozenset({Rule.CONTAINER, Rule.NOT_RUNNING, Rule.TEMPLATE})


def not_left_to_ha_maintenance(guest: Guest, node: Node) -> Rejection | None:
    """On a node in PVE HA maintenance, PVE's CRM moves the HA-managed guests itself."""
    if not (guest.ha_managed and node.in_maintenance):
        return None
    return reject(Rule.HA_EVACUATES, f"vm {guest.vmid}",
                  f"is HA-managed: PVE's {node.hastate} mode moves it")


def drain_order(guests: list[Guest]) -> list[Guest]:
    """Biggest first (host memory, then threads), then the lower vmid: stable."""
    return sorted(guests, key=lambda g: (-g.host_memory, -g.cpu_cores, g.vmid))


class Drain:
    trigger = Trigger.DRAIN

    def evaluate(self, pipe: Pipeline, report: Report) -> Move | None:
        ctx = pipe.ctx
        move: Move | None = None
        for name in sorted(ctx.draining):
            if move is not None:
                report.drain(self._waiting(name, ctx))
                continue
            move = self._drain(name, pipe, report)
        return move

    def _drain(self, name: str, pipe: Pipeline, report: Report) -> Move | None:
        ctx = pipe.ctx
        why, origin = ctx.draining[name], _origin(name, ctx)
        node = _online(name, ctx)
        if node is None:
            report.drain(DrainProgress(name, why, DrainState.OFFLINE, 0, origin=origin))
            report.outcome(f"drain: {name} is offline or not in the cluster: nothing can "
                           "leave it live")
            return None
        running, left, stuck = _split(node, ctx)
        if not running:
            report.drain(DrainProgress(name, why, DrainState.EMPTY, 0, left=tuple(left),
                                       origin=origin))
            report.note(f"drain: {name} has no running VM left")
            return None
        report.fire(TriggerFired(self.trigger, name, len(running), 0),
                    f"drain: {name} ({why}): {len(running)} running VMs to move")
        source = ctx.views[name]
        if stuck:
            report.screened(name, stuck, len(running))
        barred = {v.vmid for v in stuck}
        for guest in drain_order([ctx.smooth(g) for g in running if g.vmid not in barred]):
            verdict = pipe.place(guest, source, self.trigger)
            report.candidate(verdict)
            if verdict.target is not None:
                report.drain(DrainProgress(name, why, DrainState.MOVING, len(running),
                                           left=tuple(left), origin=origin))
                return pipe.move(guest, verdict)
            stuck.append(verdict)
        leftovers = tuple(Leftover(v.vmid, v.name, _why(v)) for v in
                          sorted(stuck, key=lambda v: v.vmid))
        report.drain(DrainProgress(name, why, DrainState.STUCK, len(running), leftovers,
                                   tuple(left), origin=origin))
        report.outcome(f"drain: {name} stuck: {len(leftovers)} running VMs cannot leave")
        return None

    def _waiting(self, name: str, ctx: Context) -> DrainProgress:
        why, origin = ctx.draining[name], _origin(name, ctx)
        if _online(name, ctx) is None:
            return DrainProgress(name, why, DrainState.OFFLINE, 0, origin=origin)
        running = sum(1 for g in ctx.guests_by_node.get(name, ()) if _live(g))
        state = DrainState.WAITING if running else DrainState.EMPTY
        return DrainProgress(name, why, state, running, origin=origin)


def _online(name: str, ctx: Context) -> Node | None:
    """The node, if it is in the cluster and online (a drained name may be neither)."""
    try:
        node = ctx.node(name)
    except KeyError:
        return None
    return node if node.online else None


def _origin(name: str, ctx: Context) -> str:
    return "operator" if name in ctx.drained_by_operator else "ha_maintenance"


def _live(guest: Guest) -> bool:
    return guest.type is GuestType.QEMU and guest.running and not guest.template


def _split(node: Node, ctx: Context) -> tuple[list[Guest], list[Leftover], list[CandidateVerdict]]:
    """The node's running VMs, the guests that stay (not live), and the running VMs that
    may not move at all (each with every reason)."""
    running: list[Guest] = []
    left: list[Leftover] = []
    stuck: list[CandidateVerdict] = []
    for guest in sorted(ctx.guests_by_node.get(node.name, ()), key=lambda g: g.vmid):
        found = guest_rejections(guest, ctx)
        if not _live(guest):
            left.append(Leftover(guest.vmid, guest.name, "; ".join(
                r.message for r in found if r.rule in _NOT_LIVE) or f"is {guest.status}"))
            continue
        running.append(guest)
        ha = not_left_to_ha_maintenance(guest, node)
        found += (ha,) if ha is not None else ()
        if found:
            stuck.append(CandidateVerdict(guest.vmid, guest.name, node.name, Trigger.DRAIN,
                                          found))
    return running, left, stuck


def _why(verdict: CandidateVerdict) -> str:
    """A stuck VM's reason in a few words: its own failures, or where every target failed."""
    if verdict.rejections:
        return "; ".join(r.message for r in verdict.rejections)
    counts = Counter(v.rejection.rule for v in verdict.targets if v.rejection is not None)
    if not counts:
        return "no other node"
    return "no valid target: " + ", ".join(
        f"{n} {rule}" for rule, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])))
