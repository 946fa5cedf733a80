"""The cluster as the balancer sees it, from the shared Redis state alone (no PVE call).

One code path for `pve-balancer status --json`, the status page and its `GET /api/status`:
whatever one shows, the others show the same way. The field names are a contract (users'
scripts read `status --json`); new fields are only ever added.
"""

from __future__ import annotations

from typing import Any

from balancer.config import Config
from balancer.quiet import open_window
from balancer.state import StateStore
from balancer.state.cache import DRAINS_CACHE, NODES_CACHE, VIOLATIONS_CACHE

#: HA states PVE gives a node it is emptying or has lost (`pve-ha-manager`'s node states).
HA_BADGES = {"maintenance": "ha maintenance", "fence": "ha fence", "gone": "ha gone"}


def collect_status(store: StateStore, config: Config, decisions: int = 5,
                   migrations: int = 20) -> dict[str, Any]:
    now = store.clock()
    holder = store.lock.holder()
    beat = store.heartbeat.info()
    nodes = (store.cache.get(NODES_CACHE) or {}).get("nodes", [])
    violations = (store.cache.get(VIOLATIONS_CACHE) or {}).get("violations", [])
    ema = store.ema.entries()
    last = store.liveness.last()
    paused = store.pause.current()
    drains = drain_listing(store)
    b = config.balancing
    quiet = open_window(b.quiet_hours, now)
    draining = {d["node"] for d in drains}
    settling = {name for name, value in ema.items() if value.relieved}
    return {
        "paused": None if paused is None else paused.to_dict(),
        "last_evaluate_at": last.at_iso if last else None,
        "last_evaluate_age_seconds": round(last.age_seconds, 3) if last else None,
        "lock": None if holder is None else {
            "vmid": holder.vmid, "name": holder.name, "source": holder.source,
            "target": holder.target, "reason": holder.reason, "upid": holder.upid,
            "acquired_at": holder.acquired_at, "started_at": holder.started_at,
            "elapsed_seconds": _since(now, holder.started_at or holder.requested_at
                                      or holder.acquired_at),
            "ttl_remaining": holder.ttl_remaining, "follower_alive": beat is not None},
        "thresholds": {"cpu_max": b.cpu_max, "memory_max": b.memory_max,
                       "safety_margin": b.safety_margin},
        "nodes": [{**n, "cpu_ema": ema[n["name"]].value if n["name"] in ema else None,
                   "ema_samples": ema[n["name"]].samples if n["name"] in ema else 0,
                   "cpu_settling": n["name"] in settling,
                   "badges": _badges(n, draining, b.exclude_nodes, settling)}
                  for n in nodes if isinstance(n, dict) and "name" in n],
        "violations": violations,
        "drains": drains,
        "quiet_hours": {"open": None if quiet is None else quiet.to_dict(),
                        "windows": [w.to_dict() for w in b.quiet_hours]},
        "marks": [{"kind": m.kind, "vmid": m.vmid, "until": m.until, "reason": m.reason}
                  for m in store.marks.listing()],
        "decisions": store.history.decisions(decisions),
        "migrations": [m.row() for m in store.history.migrations()[:migrations]],
    }


def _since(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


def _badges(node: dict[str, Any], draining: set[str], excluded: tuple[str, ...],
            settling: set[str]) -> list[str]:
    found = []
    if not node.get("online", True):
        found.append("offline")
    if node["name"] in draining:
        found.append("drained")
    if (ha := HA_BADGES.get(str(node.get("hastate")))) is not None:
        found.append(ha)
    if node["name"] in excluded:
        found.append("excluded")
    if node["name"] in settling:  # relieved by a move, within cpu_hysteresis of cpu_max
        found.append("settling")
    return found


def drain_listing(store: StateStore) -> list[dict[str, Any]]:
    """Every drained or draining node: the operator's entry (if any) and the newest
    evaluate's progress (if it has run since). A node the newest evaluate saw draining for
    HA maintenance is listed too; an operator's drain only while its entry exists (an
    `undrain` ends it at once, whatever the cache still says)."""
    entries = store.drains.all()
    cached = store.cache.get(DRAINS_CACHE)
    cached = cached if isinstance(cached, dict) else {}
    seen_at = cached.get("at") if isinstance(cached.get("at"), int | float) else None
    progress = {p["node"]: p for p in cached.get("drains") or []
                if isinstance(p, dict) and isinstance(p.get("node"), str)}
    ha = {node for node, p in progress.items() if p.get("origin") == "ha_maintenance"}
    listing = []
    for node in sorted(set(entries) | ha):
        entry = entries.get(node)
        seen = progress.get(node)
        fresh = seen is not None and seen_at is not None and (
            entry is None or seen_at >= entry.since)
        found = seen if fresh and seen is not None else {}
        listing.append({
            "node": node,
            "by": entry.by if entry else "evacuate_ha_maintenance",
            "reason": entry.reason if entry else str(found.get("reason", "")),
            "since": entry.since if entry else None,
            "state": str(found.get("state", "pending")),
            "running": found.get("running"),
            "stuck": [x for x in found.get("stuck") or [] if isinstance(x, dict)],
            "left": [x for x in found.get("left") or [] if isinstance(x, dict)],
            "seen_at": seen_at if fresh else None,
        })
    return listing
