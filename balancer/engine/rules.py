"""Names of every rule that can reject a source, a candidate or a target.

They are data (`Rejection.rule`), summarised in explanations and asserted by tests, so they
live in one place and never as string literals elsewhere.
"""

from __future__ import annotations

from enum import StrEnum

from .types import Rejection


class Rule(StrEnum):
    # Sources: a node whose load fired a trigger but which we may not drain.
    EMA_WARMING_UP = "ema_warming_up"
    CPU_HYSTERESIS = "cpu_hysteresis"
    SOURCE_OFFLINE = "source_offline"
    SOURCE_MAINTENANCE = "source_maintenance"
    SOURCE_EXCLUDED = "source_excluded"
    PROACTIVE_HOLD = "proactive_hold"
    NO_OPEN_TARGET = "no_open_target"

    # Candidates: guest checks (all failures are reported, descheduler-style).
    CONTAINER = "container"
    NOT_RUNNING = "not_running"
    STATUS_UNKNOWN = "status_unknown"
    TEMPLATE = "template"
    LOCKED = "locked"
    EXCLUDED_TAG = "excluded_tag"
    BLOCKED = "blocked"
    PLB_IGNORE = "plb_ignore"
    NODE_AFFINITY = "node_affinity"
    POSITIVE_AFFINITY = "positive_affinity"
    PLB_AFFINITY = "plb_affinity"
    HA_BUSY = "ha_busy"
    HA_MANAGED = "ha_managed"
    HA_EVACUATES = "ha_evacuates"
    BUSIEST = "busiest"
    NO_CPU_RELIEF = "no_cpu_relief"

    # Targets: the first check that failed for one (guest, node) pair.
    SAME_NODE = "same_node"
    PVE_REFUSED = "pve_refused"
    OFFLINE = "offline"
    NO_CAPACITY = "no_capacity"
    MAINTENANCE = "maintenance"
    DRAINED = "drained"
    EXCLUDED_NODE = "excluded_node"
    PINNED = "pinned"
    ANTI_AFFINITY = "anti_affinity"
    CPU_HEADROOM = "cpu_headroom"
    MEMORY_HEADROOM = "memory_headroom"
    MIDPOINT = "midpoint"

    # Ranking: a valid target placed after the others (never a rejection).
    RECENTLY_LEFT = "recently_left"


def reject(rule: Rule, subject: str, detail: str, observed: float | None = None,
           limit: float | None = None) -> Rejection:
    """The one way rejections are worded: `<rule>: <subject> <detail>`."""
    return Rejection(rule, subject, f"{rule}: {subject} {detail}", observed, limit)
