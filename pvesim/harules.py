"""HA rule feasibility, as pve-ha-manager checks it (Rules.pm `check_feasibility`).

PVE computes `errors` for every enabled rule on each GET of /cluster/ha/rules, and its CRM
drops every rule that has any before compiling the rest (Rules.pm `transform`). The checks
run in PVE's order: node-affinity, resource-affinity, then the checks between the two, so the
messages of one rule come out in the same order as PVE's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pvesim.scenario import HARuleSpec

Errors = dict[str, list[str]]


@dataclass
class _Disjoint:
    """Positive rules whose resources overlap, merged as Helpers.pm
    `find_disjoint_rules_resource_sets` merges them (greedily, lowest resource first)."""

    resources: set[str]
    ruleids: list[str] = field(default_factory=list)


def rule_errors(rules: Sequence[HARuleSpec], nodes: Sequence[str]) -> Errors:
    """rule id -> its `errors.resources` messages, for the enabled rules PVE would flag."""
    enabled = [r for r in rules if not r.disable]
    node_rules = {r.rule: r for r in enabled if r.type == "node-affinity"}
    resource_rules = {r.rule: r for r in enabled if r.type == "resource-affinity"}
    positive = {k: r for k, r in resource_rules.items() if r.affinity == "positive"}
    negative = {k: r for k, r in resource_rules.items() if r.affinity == "negative"}
    errors: Errors = {}
    _single_node_affinity_reference(node_rules, errors)
    _resource_count(resource_rules, errors)
    _negative_count(negative, len(nodes), errors)
    _positive_negative_overlap(positive, negative, errors)
    _multi_priority_with_resource_affinity(resource_rules, node_rules, errors)
    _one_node_affinity_per_positive(positive, node_rules, errors)
    _negative_within_node_affinity(negative, node_rules, errors)
    return errors


def _add(errors: Errors, ruleid: str, message: str) -> None:
    errors.setdefault(ruleid, []).append(message)


def _flag(errors: Errors, conflicts: list[tuple[str, str]], messages: dict[str, str]) -> None:
    """Each conflicting (kind, rule) gets its kind's message, in PVE's sorted order."""
    for kind, ruleid in sorted(conflicts):
        _add(errors, ruleid, messages[kind])


def _single_node_affinity_reference(node_rules: dict[str, HARuleSpec], errors: Errors) -> None:
    """NodeAffinity.pm `check_single_resource_reference`."""
    users: dict[str, list[str]] = {}
    for ruleid, rule in node_rules.items():
        for sid in rule.resources:
            users.setdefault(sid, []).append(ruleid)
    conflicts = sorted((ruleid, sid) for sid, ids in users.items() if len(ids) > 1
                       for ruleid in ids)
    for ruleid, sid in conflicts:
        _add(errors, ruleid, f"resource '{sid}' is already used in another node affinity rule")


def _resource_count(resource_rules: dict[str, HARuleSpec], errors: Errors) -> None:
    """ResourceAffinity.pm `check_resource_affinity_resources_count`."""
    for ruleid in sorted(k for k, r in resource_rules.items() if len(r.resources) < 2):
        _add(errors, ruleid, "rule is ineffective as there are less than two resources")


def _negative_count(negative: dict[str, HARuleSpec], nodes: int, errors: Errors) -> None:
    """ResourceAffinity.pm `check_negative_resource_affinity_resources_count`."""
    for ruleid in sorted(k for k, r in negative.items() if len(r.resources) > nodes):
        _add(errors, ruleid, "rule defines more resources than available nodes")


def _disjoint(positive: dict[str, HARuleSpec]) -> list[_Disjoint]:
    entries: list[_Disjoint] = []
    for ruleid in sorted(sorted(positive), key=lambda k: min(positive[k].resources)):
        resources = set(positive[ruleid].resources)
        entry = next((e for e in entries if e.resources & resources), None)
        if entry is None:
            entries.append(_Disjoint(resources, [ruleid]))
        else:
            entry.ruleids.append(ruleid)
            entry.resources |= resources
    return entries


def _positive_negative_overlap(
    positive: dict[str, HARuleSpec], negative: dict[str, HARuleSpec], errors: Errors
) -> None:
    """ResourceAffinity.pm `check_inter_resource_affinity_rules_consistency`."""
    conflicts: list[tuple[str, str]] = []
    for entry in _disjoint(positive):
        for negid, rule in negative.items():
            if len(entry.resources & set(rule.resources)) >= 2:
                conflicts.append(("negative", negid))
                conflicts.extend(("positive", ruleid) for ruleid in entry.ruleids)
    _flag(errors, conflicts, {
        kind: f"rule shares two or more resources with a {other} resource affinity rule"
        for kind, other in (("negative", "positive"), ("positive", "negative"))})


def _multi_priority_with_resource_affinity(
    resource_rules: dict[str, HARuleSpec], node_rules: dict[str, HARuleSpec], errors: Errors
) -> None:
    """Rules.pm `check_single_priority_node_affinity_in_resource_affinity_rules`: every node
    rule sharing a resource is flagged once any of them has several priorities."""
    conflicts: list[tuple[str, str]] = []
    for ruleid, rule in resource_rules.items():
        paired = [k for k, n in node_rules.items() if set(n.resources) & set(rule.resources)]
        if any(len({prio for _node, prio in node_rules[k].nodes}) > 1 for k in paired):
            conflicts.append(("resource-affinity", ruleid))
            conflicts.extend(("node-affinity", k) for k in paired)
    _flag(errors, conflicts, {
        "node-affinity": "resources are in a resource affinity rule and cannot be in a node"
                         " affinity rule with multiple priorities",
        "resource-affinity": "resources are in node affinity rules with multiple priorities",
    })


def _one_node_affinity_per_positive(
    positive: dict[str, HARuleSpec], node_rules: dict[str, HARuleSpec], errors: Errors
) -> None:
    """Rules.pm `check_single_node_affinity_per_positive_resource_affinity_rule`."""
    conflicts: list[tuple[str, str]] = []
    for entry in _disjoint(positive):
        paired = [k for k, n in node_rules.items() if entry.resources & set(n.resources)]
        if len(paired) > 1:
            conflicts.extend(("positive", ruleid) for ruleid in entry.ruleids)
            conflicts.extend(("node-affinity", k) for k in paired)
    _flag(errors, conflicts, {
        "positive": "resources are in multiple node affinity rules",
        "node-affinity": "at least one resource is in a positive resource affinity rule and"
                         " there are other resources in at least one other node affinity"
                         " rule already",
    })


def _negative_within_node_affinity(
    negative: dict[str, HARuleSpec], node_rules: dict[str, HARuleSpec], errors: Errors
) -> None:
    """Rules.pm `check_negative_resource_affinity_node_affinity_consistency`: the members
    that node rules pin need at least as many nodes as there are of them."""
    conflicts: list[tuple[str, str]] = []
    for negid, rule in negative.items():
        located: set[str] = set()
        allowed: set[str] = set()
        paired = []
        for k, node_rule in node_rules.items():
            common = set(rule.resources) & set(node_rule.resources)
            if not common:
                continue
            located |= common
            allowed |= {name for name, _prio in node_rule.nodes}
            paired.append(k)
        if len(allowed) < len(located):
            conflicts.append(("negative", negid))
            conflicts.extend(("node-affinity", k) for k in paired)
    _flag(errors, conflicts, {
        "negative": "two or more resources are restricted to less nodes than available to"
                    " the resources",
        "node-affinity": "at least one resource is in a negative resource affinity rule and"
                         " this rule would restrict these to less nodes than available to the"
                         " resources",
    })
