"""The decision engine: a pure function from a cluster snapshot to at most one migration.

`decide` reads like the rules users were promised: broken placement rules are repaired first,
then sustained CPU, then memory above `memory_max`, then proactive memory spreading in a calm
cluster; the first trigger that finds a valid move wins, and everything not chosen comes back
with its reason.
"""

from __future__ import annotations

from .context import build_context
from .explain import Report
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
    EngineInput,
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
STRATEGIES: tuple[Strategy, ...] = (RuleRepair(), CpuTrigger(), MemoryTrigger(),
                                    ProactiveTrigger())

__all__ = [
    "CandidateVerdict",
    "CpuReading",
    "Decision",
    "EngineInput",
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
        if move is not None:
            return report.decision(move)
    return report.decision(None)
