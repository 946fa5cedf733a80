"""Ranking of valid targets: a deterministic sort key, lowest wins.

We rank by the target's *projected* usage after the move, so a big node is not penalised
for a share that a small node would turn into a spike; on equal-sized nodes this is the
same order as "least utilised now". Ties fall to the other resource, then the name.
"""

from __future__ import annotations

from .views import NodeView, Resource

TargetKey = tuple[float, float, str]


def target_key(after: NodeView, resource: Resource) -> TargetKey:
    return (after.usage(resource), after.usage(resource.other), after.name)
