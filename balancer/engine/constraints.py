"""Placement constraints derived once per decision from HA rules, tags and config.

PVE HA rules and ProxLB-style tags say the same things in two dialects; here they become
plain lookups by vmid so the per-guest and per-target checks are dictionary hits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from balancer.config import BalancingConfig
from balancer.model import ClusterSnapshot, Guest

PLB_IGNORE = "plb_ignore"
PLB_PIN = "plb_pin_"
PLB_AFFINITY = "plb_affinity_"
PLB_ANTI_AFFINITY = "plb_anti_affinity_"


@dataclass(frozen=True)
class AntiAffinityGroup:
    """Guests that must never share a node, and where each member runs now."""

    label: str
    members_by_node: Mapping[str, frozenset[int]]

    def others_on(self, node: str, vmid: int) -> list[int]:
        """Members on `node` other than `vmid`: a guest never counts against itself."""
        return sorted(m for m in self.members_by_node.get(node, ()) if m != vmid)


@dataclass(frozen=True)
class Constraints:
    """vmid -> what binds it. A vmid absent from a map is not bound by that constraint."""

    node_affinity: Mapping[int, str] = field(default_factory=dict)
    positive_affinity: Mapping[int, str] = field(default_factory=dict)
    plb_affinity: Mapping[int, str] = field(default_factory=dict)
    plb_ignore: Mapping[int, str] = field(default_factory=dict)
    excluded_tag: Mapping[int, str] = field(default_factory=dict)
    pins: Mapping[int, frozenset[str]] = field(default_factory=dict)
    anti_affinity: Mapping[int, tuple[AntiAffinityGroup, ...]] = field(default_factory=dict)


@dataclass
class _Draft:
    """Mutable scratch used only while deriving; never leaves this module."""

    plb_affinity: dict[int, str] = field(default_factory=dict)
    plb_ignore: dict[int, str] = field(default_factory=dict)
    excluded_tag: dict[int, str] = field(default_factory=dict)
    pins: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    groups: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


def derive_constraints(snapshot: ClusterSnapshot, config: BalancingConfig) -> Constraints:
    draft = _Draft()
    for rule in snapshot.resource_affinity:
        if not rule.positive:
            draft.groups[f"resource-affinity rule {rule.name}"].update(rule.vmids)
    excluded = frozenset(tag.lower() for tag in config.exclude_tags)
    for guest in snapshot.guests:
        if guest.tags:
            _read_tags(guest, excluded, config.proxlb_tags, draft)
    return Constraints(
        node_affinity={v: r.name for r in snapshot.node_affinity for v in r.vmids},
        positive_affinity={v: r.name for r in snapshot.resource_affinity if r.positive
                           for v in r.vmids},
        plb_affinity=draft.plb_affinity,
        plb_ignore=draft.plb_ignore,
        excluded_tag=draft.excluded_tag,
        pins={vmid: frozenset(nodes) for vmid, nodes in draft.pins.items()},
        anti_affinity=_anti_affinity(draft.groups, snapshot.guests),
    )


def _read_tags(guest: Guest, excluded: frozenset[str], proxlb: bool, draft: _Draft) -> None:
    for tag in sorted(t.lower() for t in guest.tags):
        if tag in excluded:
            draft.excluded_tag.setdefault(guest.vmid, tag)
        if not proxlb:
            continue
        if tag.startswith(PLB_IGNORE):
            draft.plb_ignore.setdefault(guest.vmid, tag)
        elif tag.startswith(PLB_PIN) and len(tag) > len(PLB_PIN):
            draft.pins[guest.vmid].add(tag[len(PLB_PIN):])
        elif tag.startswith(PLB_AFFINITY):
            draft.plb_affinity.setdefault(guest.vmid, tag)
        elif tag.startswith(PLB_ANTI_AFFINITY):
            draft.groups[f"tag {tag}"].add(guest.vmid)


def _anti_affinity(
    groups: Mapping[str, set[int]], guests: Iterable[Guest]
) -> dict[int, tuple[AntiAffinityGroup, ...]]:
    """Place every group's members on their nodes once, then index the groups by member."""
    if not groups:
        return {}
    members = set().union(*groups.values())
    where = {g.vmid: g.node for g in guests if g.vmid in members}
    by_vmid: dict[int, list[AntiAffinityGroup]] = defaultdict(list)
    for label in sorted(groups):
        placed: dict[str, set[int]] = defaultdict(set)
        for vmid in groups[label]:
            if vmid in where:
                placed[where[vmid]].add(vmid)
        group = AntiAffinityGroup(label, {n: frozenset(v) for n, v in placed.items()})
        for vmid in groups[label]:
            by_vmid[vmid].append(group)
    return {vmid: tuple(found) for vmid, found in by_vmid.items()}
