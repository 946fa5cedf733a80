"""Ranking of valid targets: a deterministic sort key, lowest wins.

A target the VM left within `return_window_seconds` ranks after every target it did not
just leave: sending it back is the move a person would undo (it ping-pongs with load waves
that turn). It stays valid, so when it is the only target it is still chosen.

Then we rank by the target's *projected* usage after the move, so a big node is not
penalised for a share that a small node would turn into a spike; on equal-sized nodes this is
the same order as "least utilised now". Ties fall to the other resource, then the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rules import Rule, reject
from .types import Rejection
from .views import NodeView, Resource

if TYPE_CHECKING:
    from balancer.model import Guest

    from .context import Context

TargetKey = tuple[bool, float, float, str]


def recently_left(guest: Guest, target: str, ctx: Context) -> Rejection | None:
    """Why `target` ranks last for `guest`: the VM left it within the return window."""
    left_at = ctx.left_recently.get(guest.vmid, {}).get(target)
    if left_at is None:
        return None
    ago = max(0.0, ctx.snapshot.taken_at - left_at)
    window = ctx.config.return_window_seconds
    return reject(Rule.RECENTLY_LEFT, f"vm {guest.vmid}",
                  f"left {target} {_ago(ago)} ago (return_window_seconds {window:g}): "
                  "ranked after targets it did not just leave", observed=ago, limit=window)


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def target_key(after: NodeView, resource: Resource, demoted: bool = False) -> TargetKey:
    """(ranked last, projected usage, the other resource's, name): the name comes last."""
    return (demoted, after.usage(resource), after.usage(resource.other), after.name)
