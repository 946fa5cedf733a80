"""The engine's choice, confirmed by PVE's own migrate precondition.

Migratability (local disks, passthrough devices, storage not on the target) is only known by
asking PVE per VM, so it is learned lazily: only the VM about to be chosen is checked, and a
refusal is reported to `on_refused` (evaluate remembers it; `plan` only shows it) before the
next choice is tried. `plan` and evaluate share this, so `plan` never shows a move PVE would
refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from balancer.config import BalancingConfig
from balancer.engine import CpuReading, Decision, EngineInput, decide
from balancer.model import ClusterSnapshot
from balancer.pve.client import PveClient
from balancer.pve.errors import PveError

#: How many refused choices one cycle tries before deciding without them.
MAX_PRECONDITION_TRIES = 3


class PreconditionFailed(Exception):
    """PVE could not answer the precondition check: no safe decision this cycle."""


def decision_seed(snapshot: ClusterSnapshot, config: BalancingConfig) -> int:
    """Memory triggers pick a random VM; seed it from the cycle so replays are reproducible."""
    return int(snapshot.taken_at // max(config.interval_seconds, 1.0))


def choose_move(client: PveClient, snapshot: ClusterSnapshot, cpu: Mapping[str, CpuReading],
                blocked: Mapping[int, str], config: BalancingConfig,
                on_refused: Callable[[int, str], None]) -> Decision:
    refused = dict(blocked)
    seed = decision_seed(snapshot, config)
    for _ in range(MAX_PRECONDITION_TRIES):
        decision = decide(EngineInput(snapshot, cpu, refused, config, seed))
        move = decision.move
        if move is None:
            return decision
        try:
            pre = client.migrate_precondition(move.source, move.vmid, move.target)
        except PveError as exc:
            raise PreconditionFailed(
                f"migrate precondition for vm {move.vmid} failed: {exc}") from None
        if pre.allowed:
            return decision
        reason = pre.reason or "PVE refused the migration precondition"
        on_refused(move.vmid, reason)
        refused[move.vmid] = f"unmigratable: {reason}"
    return decide(EngineInput(snapshot, cpu, refused, config, seed))
