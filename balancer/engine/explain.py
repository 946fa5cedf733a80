"""Collects what a decision saw and renders it as data plus a bounded list of human lines.

Structured verdicts are always kept in full; human lines about individual candidates are
capped so a 10,000-guest cycle still logs a readable paragraph.
"""

from __future__ import annotations

from collections import Counter

from .types import (
    CandidateVerdict,
    Decision,
    DrainProgress,
    Move,
    Rejection,
    TriggerFired,
    Violation,
)

#: Lines about individual candidates (evaluated or not) across the whole decision.
MAX_CANDIDATE_LINES = 30
#: Of those, lines for guests that fit nowhere and whose per-target verdicts would be
#: computed only to write the line (each costs a pass over every node).
MAX_DEFERRED_LINES = 10
#: A source with more non-candidates than this gets only the aggregate line for them.
MAX_INELIGIBLE_LINES_PER_SOURCE = 10


class Report:
    """Append-only notebook for one `decide` call; `decision()` freezes it."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._outcomes: list[str] = []
        self._fired: list[TriggerFired] = []
        self._skipped: list[Rejection] = []
        self._candidates: list[CandidateVerdict] = []
        self._shown = 0
        self._shown_deferred = 0
        self._hidden = 0
        self._violations: list[Violation] = []
        self._drains: list[DrainProgress] = []
        self._unrepaired: list[Violation] = []

    def note(self, line: str) -> None:
        self._lines.append(line)

    def outcome(self, sentence: str) -> None:
        """Why a trigger produced no move; joined into the headline of a "none" decision."""
        self._outcomes.append(sentence)
        self._lines.append(sentence)

    def fire(self, event: TriggerFired, line: str | None) -> None:
        """A trigger fired; `line` None keeps it as data only (a long list is summarised)."""
        self._fired.append(event)
        if line is not None:
            self._lines.append(line)

    def skip_source(self, prefix: str, rejection: Rejection) -> None:
        self._skipped.append(rejection)
        self._lines.append(f"{prefix}: source skipped: {rejection.message}")

    def violations(self, found: list[Violation]) -> None:
        self._violations.extend(found)

    def unrepaired(self, found: list[Violation]) -> None:
        self._unrepaired.extend(found)

    def drain(self, progress: DrainProgress) -> None:
        self._drains.append(progress)

    def screened(self, source: str, rejected: list[CandidateVerdict], total: int) -> None:
        """Guests on a source that are not candidates: one histogram line, details if few."""
        self._candidates.extend(rejected)
        if not rejected:
            return
        # One count per guest, by its first reason, so the counts add up to the total; every
        # reason of every guest is in its own line and in `Decision.candidates`.
        counts = Counter(v.rejections[0].rule for v in rejected if v.rejections)
        histogram = ", ".join(f"{n} {rule}" for rule, n in sorted(
            counts.items(), key=lambda item: (-item[1], item[0])))
        self._lines.append(
            f"{source}: {len(rejected)}/{total} guests are not candidates ({histogram})")
        if len(rejected) <= MAX_INELIGIBLE_LINES_PER_SOURCE:
            for verdict in rejected:
                self._candidate_line(verdict)

    def candidate(self, verdict: CandidateVerdict) -> None:
        self._candidates.append(verdict)
        self._candidate_line(verdict)

    def _candidate_line(self, verdict: CandidateVerdict) -> None:
        deferred = verdict.deferred
        if self._shown >= MAX_CANDIDATE_LINES or (
                deferred and self._shown_deferred >= MAX_DEFERRED_LINES):
            self._hidden += 1
            return
        self._shown += 1
        self._shown_deferred += deferred
        self._lines.append(verdict.summary())

    def decision(self, move: Move | None) -> Decision:
        lines = [headline(move, self._outcomes), *self._lines]
        if self._hidden:
            lines.append(f"{self._hidden} more candidate verdicts not shown "
                         "(kept in Decision.candidates)")
        return Decision(move, tuple(lines), tuple(self._fired), tuple(self._skipped),
                        tuple(self._candidates), tuple(self._violations), tuple(self._drains),
                        tuple(self._unrepaired))


def headline(move: Move | None, outcomes: list[str]) -> str:
    """The first line: what happens, in one sentence."""
    if move is None:
        return "no migration: " + ("; ".join(outcomes) or "nothing to do")
    sb, sa, tb, ta = move.source_before, move.source_after, move.target_before, move.target_after
    return (f"migrate vm {move.vmid} ({move.name}) {move.source} -> {move.target} "
            f"[{move.reason}]: {move.source} cpu {sb.cpu:.2f}->{sa.cpu:.2f} "
            f"mem {sb.memory:.2f}->{sa.memory:.2f}, {move.target} cpu {tb.cpu:.2f}->{ta.cpu:.2f} "
            f"mem {tb.memory:.2f}->{ta.memory:.2f}")
