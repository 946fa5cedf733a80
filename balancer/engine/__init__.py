"""The decision engine: a pure function from a cluster snapshot to at most one migration.

`decide` reads like the rules users were promised: drained nodes are emptied first, then
broken placement rules are repaired, then sustained CPU, then memory above `memory_max`,
then proactive memory spreading in a calm cluster; the first trigger that finds a valid move
wins, and everything not chosen comes back with its reason. In quiet hours only a drain
moves; any other move is shown and held back.
"""

from __future__ import annotations

from .context import build_context
from .drain import Drain
from .explain import Report, headline
from .pipeline import Pipeline
from .repair import RuleRepair
from .rules import Rule
from .strategies import (
    CpuTrigger,
    MemoryTrigger,
    ProactiveTrigger,
    Strategy,
    above_proactive,
    proactive_threshold,
)
from .types import (
    CandidateVerdict,
    CpuReading,
    Decision,
    DrainProgress,
    DrainState,
    EngineInput,
    Leftover,
    Move,
    Rejection,
    TargetVerdict,
    Trigger,
    TriggerFired,
    Utilisation,
    Violation,
)
from .views import cpu_share

#: In rule order; the first that finds a valid move wins.
STRATEGIES: tuple[Strategy, ...] = (Drain(), RuleRepair(), CpuTrigger(), MemoryTrigger(),
                                    ProactiveTrigger())

__all__ = [
    "CandidateVerdict",
    "CpuReading",
    "Decision",
    "DrainProgress",
    "DrainState",
    "EngineInput",
    "Leftover",
    "Move",
    "Rejection",
    "Rule",
    "TargetVerdict",
    "Trigger",
    "TriggerFired",
    "Utilisation",
    "Violation",
    "above_proactive",
    "cpu_share",
    "decide",
    "proactive_threshold",
]


def decide(inp: EngineInput) -> Decision:
    """At most one live migration for this snapshot, with the reason for everything else."""
    ctx = build_context(inp)
    report = Report()
    if not ctx.snapshot.quorate:
        report.outcome("cluster is not quorate; PVE would refuse migrations")
        return report.decision(None)
    if not ctx.online:
        report.outcome("no node is online")
        return report.decision(None)
    pipe = Pipeline(ctx)
    for strategy in STRATEGIES:
        move = strategy.evaluate(pipe, report)
        if move is None:
            continue
        if ctx.quiet is not None and move.reason is not Trigger.DRAIN:
            report.outcome(f"{ctx.quiet}: only drains move; held back: "
                           + headline(move, []).removeprefix("migrate "))
            return report.decision(None)
        return report.decision(move)
    return report.decision(None)
