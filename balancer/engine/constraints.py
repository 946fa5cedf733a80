"""Placement constraints derived once per decision from HA rules, tags and config.

PVE HA rules and ProxLB-style tags say the same things in two dialects; here they become
plain lookups by vmid so the per-guest and per-target checks are dictionary hits.
"""

from __future__ import annotations

import functools
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
    """Guests that must never share a node, and where each member runs now.

    Members from guest entries the snapshot could not read are `suspected`: they count where
    they run, and one whose node is unknown (`anywhere`) counts on every node. Unreadable ids
    are negative when PVE's entry had no readable vmid."""

    label: str
    members_by_node: Mapping[str, frozenset[int]]
    anywhere: frozenset[int] = frozenset()
    suspected: frozenset[int] = frozenset()

    def others_on(self, node: str, vmid: int) -> list[int]:
        """Members on `node` other than `vmid`: a guest never counts against itself."""
        here = self.members_by_node.get(node, frozenset()) | self.anywhere
        return sorted(m for m in here if m != vmid)

    def describe(self, vmids: list[int]) -> str:
        """`vm 101, vm 102 (unreadable entry: may be a member)`."""
        return ", ".join(
            (f"vm {m}" if m > 0 else "a guest without a readable vmid")
            + (" (unreadable entry: may be a member)" if m in self.suspected else "")
            for m in vmids)


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
    #: Unreadable guests whose tags are unknown: possible members of every tag group.
    maybe_in_every_tag_group: set[int] = field(default_factory=set)


def derive_constraints(snapshot: ClusterSnapshot, config: BalancingConfig) -> Constraints:
    draft = _Draft()
    for rule in snapshot.resource_affinity:
        if not rule.positive:
            draft.groups[f"resource-affinity rule {rule.name}"].update(rule.vmids)
    excluded = frozenset(tag.lower() for tag in config.exclude_tags)
    for guest in snapshot.guests:
        if guest.tags:
            _read_tags(guest.vmid, guest.tags, excluded, config.proxlb_tags, draft)
    unreadable = _unreadable_members(snapshot, excluded, config.proxlb_tags, draft)
    return Constraints(
        node_affinity={v: r.name for r in snapshot.node_affinity for v in r.vmids},
        positive_affinity={v: r.name for r in snapshot.resource_affinity if r.positive
                           for v in r.vmids},
        plb_affinity=draft.plb_affinity,
        plb_ignore=draft.plb_ignore,
        excluded_tag=draft.excluded_tag,
        pins={vmid: frozenset(nodes) for vmid, nodes in draft.pins.items()},
        anti_affinity=_anti_affinity(draft, snapshot.guests, unreadable),
    )


@dataclass(frozen=True)
class _TagMeaning:
    """What one guest's tag set says, read once per distinct set (guests share few)."""

    excluded: str | None = None
    ignore: str | None = None
    pins: frozenset[str] = frozenset()
    affinity: str | None = None
    anti_affinity: tuple[str, ...] = ()


_NOTHING = _TagMeaning()


@functools.lru_cache(maxsize=4096)
def _meaning(tags: frozenset[str], excluded: frozenset[str], proxlb: bool) -> _TagMeaning:
    """Only the tags that matter are looked at: an excluded tag, and ProxLB's `plb_*`."""
    lowered = sorted(t.lower() for t in tags)
    found_excluded = next((t for t in lowered if t in excluded), None)
    plb = [t for t in lowered if t.startswith("plb_")] if proxlb else []
    if found_excluded is None and not plb:
        return _NOTHING
    return _TagMeaning(
        excluded=found_excluded,
        ignore=next((t for t in plb if t.startswith(PLB_IGNORE)), None),
        pins=frozenset(t[len(PLB_PIN):] for t in plb
                       if t.startswith(PLB_PIN) and len(t) > len(PLB_PIN)),
        affinity=next((t for t in plb if t.startswith(PLB_AFFINITY)), None),
        anti_affinity=tuple(t for t in plb if t.startswith(PLB_ANTI_AFFINITY)))


def _read_tags(vmid: int, tags: Iterable[str], excluded: frozenset[str], proxlb: bool,
               draft: _Draft) -> None:
    meaning = _meaning(frozenset(tags), excluded, proxlb)
    if meaning is _NOTHING:
        return
    if meaning.excluded is not None:
        draft.excluded_tag.setdefault(vmid, meaning.excluded)
    if meaning.ignore is not None:
        draft.plb_ignore.setdefault(vmid, meaning.ignore)
    if meaning.pins:
        draft.pins[vmid].update(meaning.pins)
    if meaning.affinity is not None:
        draft.plb_affinity.setdefault(vmid, meaning.affinity)
    for tag in meaning.anti_affinity:
        draft.groups[f"tag {tag}"].add(vmid)


def _unreadable_members(snapshot: ClusterSnapshot, excluded: frozenset[str], proxlb: bool,
                        draft: _Draft) -> dict[int, str | None]:
    """Guests the snapshot left out, by id (negative when the vmid was unreadable) -> node
    (None: unknown). Their readable tags join the groups; unknown tags may mean any group."""
    found: dict[int, str | None] = {}
    for i, guest in enumerate(snapshot.unreadable_guests, start=1):
        vmid = guest.vmid if guest.vmid is not None else -i
        found[vmid] = guest.node
        if guest.tags is None:
            if proxlb:
                draft.maybe_in_every_tag_group.add(vmid)
        elif guest.tags:
            _read_tags(vmid, guest.tags, excluded, proxlb, draft)
    return found


def _anti_affinity(draft: _Draft, guests: Iterable[Guest], unreadable: Mapping[int, str | None],
                   ) -> dict[int, tuple[AntiAffinityGroup, ...]]:
    """Place every group's members on their nodes once, then index the groups by member."""
    groups = draft.groups
    if not groups:
        return {}
    for label in groups:
        if label.startswith("tag "):
            groups[label] |= draft.maybe_in_every_tag_group
    members = set().union(*groups.values())
    where: dict[int, str | None] = {g.vmid: g.node for g in guests if g.vmid in members}
    where.update((vmid, node) for vmid, node in unreadable.items() if vmid in members)
    by_vmid: dict[int, list[AntiAffinityGroup]] = defaultdict(list)
    for label in sorted(groups):
        placed: dict[str, set[int]] = defaultdict(set)
        anywhere: set[int] = set()
        for vmid in groups[label]:
            if vmid not in where:
                continue  # named by an HA rule but not in the cluster: nothing to keep apart
            node = where[vmid]
            if node is None:
                anywhere.add(vmid)
            else:
                placed[node].add(vmid)
        group = AntiAffinityGroup(label, {n: frozenset(v) for n, v in placed.items()},
                                  frozenset(anywhere), frozenset(groups[label] & unreadable.keys()))
        for vmid in groups[label]:
            by_vmid[vmid].append(group)
    return {vmid: tuple(found) for vmid, found in by_vmid.items()}
