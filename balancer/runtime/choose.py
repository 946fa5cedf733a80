"""The engine's choice, confirmed by PVE's own migrate precondition.

Migratability (local disks, passthrough devices, storage not on the target) is only known by
asking PVE per VM, so it is learned lazily: only the VM about to be chosen is checked. PVE
answers for every node at once, so one question settles every target of that VM: a VM-wide
refusal takes the VM out (reported to `on_refused`, which evaluate remembers), a per-node one
takes only those targets out, and the engine decides again. Every move this returns was
allowed by PVE; after `MAX_PRECONDITION_TRIES` refused VMs the cycle moves nothing and says so.
`plan` and evaluate share this, so `plan` never shows a move PVE would refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from balancer.config import BalancingConfig
from balancer.engine import Decision, EngineInput, Move, decide
from balancer.model import ClusterSnapshot
from balancer.pve.client import PveClient
from balancer.pve.errors import PveError
from balancer.pve.records import Precondition

#: How many VMs one cycle asks PVE about before giving up on a verified move.
MAX_PRECONDITION_TRIES = 3


class PreconditionFailed(Exception):
    """PVE could not answer the precondition check: no safe decision this cycle."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """PVE refused the engine's choice: the whole VM (`whole_vm`) or only some targets."""

    vmid: int
    reason: str
    whole_vm: bool


def decision_seed(snapshot: ClusterSnapshot, config: BalancingConfig) -> int:
    """Memory triggers pick a random VM; seed it from the cycle so replays are reproducible."""
    return int(snapshot.taken_at // max(config.interval_seconds, 1.0))


def choose_move(client: PveClient, inp: EngineInput,
                on_refused: Callable[[Refusal], None]) -> Decision:
    """The engine's best move that PVE's precondition allows, or a decision without a move.
    Each refusal is added to the engine's input (a blocked VM, refused targets) and the
    engine asked again."""
    snapshot = inp.snapshot
    blocked = dict(inp.blocked)
    refused_targets: dict[int, dict[str, str]] = {}
    asked: dict[int, Precondition] = {}
    while True:
        decision = decide(dataclasses.replace(inp, blocked=blocked,
                                              refused_targets=refused_targets))
        move = decision.move
        if move is None:
            return decision
        if move.vmid not in asked:
            if len(asked) >= MAX_PRECONDITION_TRIES:
                return _unverified(decision, len(asked))
            asked[move.vmid] = _ask(client, move)
        precondition = asked[move.vmid]
        refusal = precondition.refusal(move.target)
        if refusal is None:
            return decision
        if precondition.blockers:
            on_refused(Refusal(move.vmid, refusal, whole_vm=True))
            blocked[move.vmid] = f"unmigratable: {refusal}"
        else:
            on_refused(Refusal(move.vmid, refusal, whole_vm=False))
            refused_targets[move.vmid] = {
                node.name: reason for node in snapshot.nodes
                if node.name != move.source
                and (reason := precondition.refusal(node.name)) is not None}


def _ask(client: PveClient, move: Move) -> Precondition:
    try:
        return client.migrate_precondition(move.source, move.vmid)
    except PveError as exc:
        raise PreconditionFailed(
            f"migrate precondition for vm {move.vmid} failed: {exc}") from None


def _unverified(decision: Decision, refusals: int) -> Decision:
    """The engine still has a choice, but PVE was not asked about it: move nothing."""
    assert decision.move is not None
    headline = (f"no migration: no verified move after {refusals} refusals by PVE's migrate "
                f"precondition (next choice vm {decision.move.vmid} {decision.move.source} -> "
                f"{decision.move.target} not asked)")
    return dataclasses.replace(decision, move=None,
                               explanation=(headline, *decision.explanation[1:]))
