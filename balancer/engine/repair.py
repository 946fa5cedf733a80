"""Rule repair: placement rules nobody else enforces, put right first, one move per cycle.

ProxLB's `plb_anti_affinity_<group>` (two members on one node) and `plb_pin_<node>` (a VM
outside its pinned nodes) are tags only: once broken (a hand migration, a node back from
maintenance, a tag added later) nothing else puts them right. PVE 9 HA rules stay PVE's: its
CRM enforces them. A repair is not a balancing move: the target passes every filter and PVE's
precondition, but not the no-flip midpoint. A violation with no valid move is reported, never
forced.
"""

from __future__ import annotations

from collections import defaultdict

from balancer.model import Guest

from .context import Context
from .eligibility import guest_rejections
from .explain import Report
from .filters import SOURCE_FILTERS, first_node_rejection
from .pipeline import Pipeline
from .types import CandidateVerdict, Move, Trigger, TriggerFired, Violation

ANTI_AFFINITY = "anti_affinity"
PIN = "pin"
#: Anti-affinity groups from tags carry this label prefix (HA rules' groups do not).
TAG_GROUP = "tag "


def find_violations(ctx: Context) -> list[Violation]:
    """Every broken ProxLB anti-affinity group and pin, in a stable order."""
    if not ctx.config.proxlb_tags:
        return []
    found: list[Violation] = []
    seen: set[str] = set()
    for groups in ctx.constraints.anti_affinity.values():
        for group in groups:
            if not group.label.startswith(TAG_GROUP) or group.label in seen:
                continue
            seen.add(group.label)
            for node, members in sorted(group.members_by_node.items()):
                known = sorted(m for m in members if m > 0 and m not in group.suspected)
                if len(known) >= 2:
                    found.append(Violation(ANTI_AFFINITY, group.label.removeprefix(TAG_GROUP),
                                           node, tuple(known)))
    for guest in sorted(ctx.snapshot.guests, key=lambda g: g.vmid):
        pins = ctx.constraints.pins.get(guest.vmid)
        if pins and guest.node.lower() not in pins:
            label = "its pinned nodes " + ", ".join(sorted(pins))
            found.append(Violation(PIN, label, guest.node, (guest.vmid,)))
    return sorted(found, key=lambda v: (v.rule, v.label, v.node))


def repair_order(violations: list[Violation], ctx: Context) -> list[Guest]:
    """The members whose move fixes the most first (for anti-affinity: the others on its
    node; for a pin: itself), then the smaller copy, then the lower vmid."""
    fixes: dict[int, int] = defaultdict(int)
    for v in violations:
        for vmid in v.vmids:
            fixes[vmid] += len(v.vmids) - 1 if v.rule == ANTI_AFFINITY else 1
    guests = [ctx.smooth(g) for g in ctx.snapshot.guests if g.vmid in fixes]
    return sorted(guests, key=lambda g: (-fixes[g.vmid], g.host_memory, g.vmid))


#: Violations named in a headline, and given a line each; the rest are counted (all of
#: them are in `Decision.violations`).
MAX_NAMED = 3
MAX_LINES = 10


def _listing(violations: list[Violation]) -> str:
    named = "; ".join(v.describe() for v in violations[:MAX_NAMED])
    rest = len(violations) - MAX_NAMED
    return named + (f" and {rest} more" if rest > 0 else "")


class RuleRepair:
    trigger = Trigger.RULE

    def evaluate(self, pipe: Pipeline, report: Report) -> Move | None:
        ctx = pipe.ctx
        violations = find_violations(ctx)
        report.violations(violations)
        if not violations:
            return None
        for index, v in enumerate(violations):
            line = f"rule: {v.describe()}" if index < MAX_LINES else None
            report.fire(TriggerFired(self.trigger, v.node, len(v.vmids), 1), line)
        if len(violations) > MAX_LINES:
            report.note(f"rule: {len(violations) - MAX_LINES} more broken rules "
                        "(all in plan --json and status)")
        if not ctx.config.repair_rules:
            report.unrepaired(violations)
            report.outcome(f"rule: {len(violations)} broken, not repaired "
                           "(balancing.repair_rules: false)")
            return None
        for guest in repair_order(violations, ctx):
            if (move := self._try(guest, pipe, report)) is not None:
                return move
        report.unrepaired(violations)
        report.outcome(f"rule: cannot repair {_listing(violations)}: no valid move")
        return None

    def _try(self, guest: Guest, pipe: Pipeline, report: Report) -> Move | None:
        ctx = pipe.ctx
        node = ctx.node(guest.node)
        source_rejection = first_node_rejection(SOURCE_FILTERS, node, ctx)
        rejections = guest_rejections(guest, ctx) + (
            (source_rejection,) if source_rejection is not None else ())
        if rejections:
            report.screened(guest.node, [CandidateVerdict(
                guest.vmid, guest.name, guest.node, self.trigger, rejections)], 1)
            return None
        verdict = pipe.place(guest, ctx.views[guest.node], self.trigger)
        report.candidate(verdict)
        return pipe.move(guest, verdict) if verdict.target is not None else None
