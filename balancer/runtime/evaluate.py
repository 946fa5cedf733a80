"""`evaluate`: one balancing cycle. Settled cluster -> fresh read -> EMA -> decision -> act.

Every early exit is a `skipped` result with a sentence saying why; nothing is decided from a
partial read, a non-quorate cluster or while anything is migrating.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from balancer.engine import CpuReading, Decision, EngineInput, above_proactive
from balancer.logs import event_fields
from balancer.migrations import EventKind, Migration, MigrationEvent, MigrationRef, rebuild
from balancer.model import ClusterSnapshot
from balancer.notify import saturated_without_move
from balancer.pve.errors import PveAuthError, PveError, PvePermissionError
from balancer.pve.records import RunningMigration
from balancer.pve.snapshot import read_snapshot
from balancer.quiet import open_window
from balancer.runtime import notices
from balancer.runtime.choose import PreconditionFailed, Refusal, choose_move, decision_seed
from balancer.runtime.context import Dispatcher, Runtime, schedule_poll
from balancer.runtime.reconcile import (
    COOLDOWNS_REBUILT,
    RECENT_EVENTS,
    rebuild_cooldowns_if_lost,
    reconcile_unfinished,
)
from balancer.runtime.results import CycleResult
from balancer.runtime.skip import Skip
from balancer.state.cache import DRAINS_CACHE, NODES_CACHE, VIOLATIONS_CACHE
from balancer.state.drains import DrainEntry
from balancer.state.pause import PauseState
from balancer.state.scripts import run_after, run_together

log = logging.getLogger("balancer.evaluate")



def evaluate(rt: Runtime, dispatch: Dispatcher, scheduled: bool = False) -> CycleResult:
    """One cycle; returns the JSON result Flower shows (same fields as `plan --json`).

    A `scheduled` cycle (beat's) is dropped when another scheduled one started less than half
    an interval ago, by Redis's clock: a backlog (workers were away) runs once, not N times."""
    started = time.monotonic()
    try:
        if scheduled and not rt.store.claim_cycle(rt.timings.interval / 2):
            raise Skip("backlog", "a scheduled cycle started less than half an interval ago")
        with rt.store.eval_lock.hold(rt.timings.eval_lock_ttl) as token:
            if token is None:
                raise Skip("evaluate_running", "another evaluate is running")
            with rt.client.deadline(rt.timings.cycle_deadline):
                result = _evaluate_settled(rt, dispatch)
    except Skip as skip:
        result = CycleResult.skipped(skip.kind, str(skip))
    except redis.exceptions.RedisError as exc:
        result = CycleResult.skipped("state_store",
                                     f"state store unavailable: {type(exc).__name__}")
    _log_state_change(rt, result)
    _observe(rt, result, time.monotonic() - started)
    return result


#: Skips only an operator can end (a wrong or revoked token, a missing privilege): WARNING.
NEEDS_OPERATOR = frozenset({"access_denied"})


def _log_state_change(rt: Runtime, result: CycleResult) -> None:
    """One line when cycles start being skipped for a reason, one when they stop; the cycles
    in between are logged at DEBUG (each is still counted in the metrics)."""
    skip = result.skip
    if skip == rt.last_skip:
        if skip is not None:
            log.debug("evaluate skipped", extra=event_fields(skip=skip, reason=result.reason))
        return
    if skip is not None:
        level = logging.WARNING if skip in NEEDS_OPERATOR else logging.INFO
        log.log(level, "evaluate skipped", extra=event_fields(skip=skip, reason=result.reason))
    else:
        log.info("evaluate resumed", extra=event_fields(after=rt.last_skip))
    rt.last_skip = skip


def cut_short(rt: Runtime, kind: str, reason: str, seconds: float) -> CycleResult:
    """A cycle stopped from outside (e.g. the task's time limit while PVE does not answer):
    reported and counted like any other skip, not as an error."""
    result = CycleResult.skipped(kind, reason)
    log.warning("evaluate cut short", extra=event_fields(skip=kind, reason=reason))
    _observe(rt, result, seconds)
    return result


def _observe(rt: Runtime, result: CycleResult, seconds: float) -> None:
    """Metrics are best effort: a Redis hiccup here must not turn a decision into an error."""
    try:
        pipe = rt.store.client.pipeline(transaction=True)  # one round trip for all of it
        rt.store.liveness.queue_stamp(pipe, result.action)
        metrics = rt.store.metrics
        if result.skip is not None:
            metrics.queue_count(pipe, "skipped_cycles", {"reason": result.skip})
        else:
            metrics.queue_count(pipe, "decisions", {"action": result.action,
                                                    "trigger": result.reason or "none"})
        metrics.queue_observe(pipe, "evaluate_duration_seconds", seconds)
        pipe.execute()
    except redis.exceptions.RedisError:
        log.debug("metrics not recorded", exc_info=True)


def _evaluate_settled(rt: Runtime, dispatch: Dispatcher) -> CycleResult:
    _ensure_no_migration_in_flight(rt, dispatch)
    snapshot, records = _read_settled_cluster(rt)
    # What our records miss (an end nobody saw, a wiped store) is read back from PVE first, and
    # before the EMA update: a recovered move corrects the averages this cycle decides on.
    reconcile_unfinished(rt, snapshot, records.migrations)
    if not records.cooldowns_rebuilt:
        rebuild_cooldowns_if_lost(rt, snapshot)
    cfg = rt.config.balancing
    cpu, held, guest_cpu = update_averages(rt, snapshot)
    # Paused: the cluster is read and the averages kept current; no move is chosen.
    if records.paused is not None:
        raise Skip("paused", records.paused.describe())
    quiet = open_window(cfg.quiet_hours, snapshot.taken_at)
    marks = rt.store.marks.current()
    inp = EngineInput(snapshot, cpu, marks.blocked, cfg,
                      decision_seed(snapshot, cfg), proactive_held=held, guest_cpu=guest_cpu,
                      drained={node: d.describe() for node, d in records.drains.items()},
                      quiet=None if quiet is None else quiet.describe(),
                      left_recently=marks.left)
    try:
        decision = choose_move(rt.client, inp, on_refused=lambda refusal: _refused(rt, refusal))
    except PreconditionFailed as exc:
        raise Skip("read_failed", str(exc)) from None
    decision_id = uuid.uuid4().hex[:12]
    result = CycleResult.decided(decision, decision_id, rt.config.balancing.dry_run)
    stuck_for = _record(rt, result, decision, records.last_decision,
                        saturated_without_move(decision, quiet is not None))
    notices.after_decision(rt, decision, stuck_for, records.drains)
    if decision.move is not None and not rt.config.balancing.dry_run:
        _start(rt, dispatch, decision, decision_id)
    return result


def update_averages(rt: Runtime, snapshot: ClusterSnapshot
                    ) -> tuple[dict[str, CpuReading], dict[str, float], Mapping[int, float]]:
    """Fold this read into the node CPU averages, the proactive holds and the guest CPU
    averages (three atomic scripts, one round trip)."""
    cfg, t = rt.config.balancing, rt.timings
    online = [node.name for node in snapshot.nodes if node.online]
    store = rt.store
    cpu, held, guest_cpu = run_together(store.client, [
        store.ema.update_call({node.name: node.cpu for node in snapshot.nodes if node.online},
                              sampled_at=snapshot.taken_at, alpha=cfg.ema_alpha,
                              online=online, ttl_seconds=t.ema_ttl,
                              band=(cfg.cpu_max - cfg.cpu_hysteresis,
                                    cfg.cpu_max + cfg.cpu_hysteresis)),
        store.holds.observe_call(above_proactive(snapshot, cfg), gap=t.hold_gap,
                                 ttl=t.ema_ttl),
        store.guest_ema.update_call({g.vmid: g.cpu for g in snapshot.guests
                                     if g.status == "running"},
                                    sampled_at=snapshot.taken_at, alpha=cfg.ema_alpha,
                                    reset_after=cfg.ema_window_seconds,
                                    ttl_seconds=t.ema_ttl),
    ])
    return cpu, held, guest_cpu


def _ensure_no_migration_in_flight(rt: Runtime, dispatch: Dispatcher) -> None:
    """Decisions are made only on a settled cluster: skip while our migration runs, and adopt
    it when its follower died (heartbeat silent)."""
    holder = rt.store.lock.holder()
    if holder is None:
        return
    what = f"vm {holder.vmid} {holder.source}->{holder.target}"
    if holder.upid and not rt.store.heartbeat.alive():
        t = rt.timings
        token = rt.store.lock.take_over(rt.store.heartbeat, t.lock_ttl, t.heartbeat_ttl)
        if token is not None:
            log.warning("migration follower silent; taking over",
                        extra=event_fields(vmid=holder.vmid, upid=holder.upid))
            schedule_poll(rt, dispatch, holder.upid, token, 0.0)
            raise Skip("migration_in_flight",
                       f"migration in flight: {what}; took over following {holder.upid}")
    raise Skip("migration_in_flight", f"migration in flight: {what} ({holder.upid or 'starting'})")


@dataclass(frozen=True)
class Records:
    """What a cycle needs from our own records, loaded in the round trip that publishes the
    nodes it read."""

    migrations: list[Migration]
    cooldowns_rebuilt: bool
    last_decision: dict[str, Any] | None
    paused: PauseState | None
    drains: dict[str, DrainEntry]


def _read_settled_cluster(rt: Runtime) -> tuple[ClusterSnapshot, Records]:
    try:
        read = read_snapshot(rt.client)
    except (PveAuthError, PvePermissionError) as exc:
        # Nothing fixes itself here: the operator must act (said once, at WARNING).
        raise Skip("access_denied", f"cluster read refused: {exc}") from None
    except PveError as exc:
        raise Skip("read_failed", f"cluster read failed: {exc}") from None
    records = publish_and_load(rt, read.snapshot)
    announce_pve_auto_rebalance(rt, read.snapshot)
    if not read.snapshot.quorate:
        raise Skip("no_quorum", "cluster is not quorate: no action without quorum")
    if read.running_migrations:
        raise Skip("pve_migration_in_flight", "PVE shows a migration in flight: "
                   + ", ".join(_describe(m) for m in read.running_migrations))
    return read.snapshot, records


def publish_and_load(rt: Runtime, snapshot: ClusterSnapshot) -> Records:
    """Publish the latest per-node usage (for `status`, the exporter and the demo) and load
    our records, in one round trip."""
    guests = Counter(g.node for g in snapshot.guests)
    nodes = [{"name": n.name, "online": n.online, "cpu": n.cpu, "memory": n.memory_ratio,
              "maxcpu": n.maxcpu, "maxmem": n.maxmem, "hastate": n.hastate,
              "guests": guests[n.name]}
             for n in snapshot.nodes]
    store = rt.store
    pipe = store.client.pipeline(transaction=False)
    store.cache.queue_set(pipe, NODES_CACHE, {"at": snapshot.taken_at,
                                              "cluster": snapshot.cluster_name, "nodes": nodes},
                          rt.timings.published_ttl)
    store.history.queue_events(pipe, RECENT_EVENTS)
    store.cache.queue_get(pipe, COOLDOWNS_REBUILT)
    store.history.queue_last_decision(pipe)
    store.pause.queue_current(pipe)
    store.drains.queue_all(pipe)
    _, events, rebuilt, last, paused, drains, _ = pipe.execute()
    return Records(migrations=rebuild(store.history.parse_events(events)),
                   cooldowns_rebuilt=store.cache.parse(COOLDOWNS_REBUILT, rebuilt) is not None,
                   last_decision=store.history.parse_last_decision(last),
                   paused=store.pause.parse(paused, rt.clock()),
                   drains=store.drains.parse(drains))


def announce_pve_auto_rebalance(rt: Runtime, snapshot: ClusterSnapshot) -> None:
    """Two balancers on the same guests ping-pong: say once (and on every change) whether
    PVE's own HA auto-rebalance is on and what that means for HA-managed guests here."""
    on = snapshot.ha_auto_rebalance
    if rt.pve_auto_rebalance == on:
        return
    rt.pve_auto_rebalance = on
    ha_guests = sum(1 for g in snapshot.guests if g.ha_managed)
    if not on:
        log.info("PVE HA auto-rebalance is off", extra=event_fields(ha_guests=ha_guests))
    elif rt.config.balancing.leave_ha_to_pve:
        log.warning("PVE HA auto-rebalance is on: leaving HA-managed guests to PVE",
                    extra=event_fields(ha_guests=ha_guests, leave_ha_to_pve=True))
    else:
        log.warning("PVE HA auto-rebalance is on and leave_ha_to_pve is false: both balancers "
                    "may move HA-managed guests", extra=event_fields(ha_guests=ha_guests))


def _describe(migration: RunningMigration) -> str:
    route = f"{migration.source or '?'}->{migration.target or '?'}"
    return f"vm {migration.vmid} {route} ({', '.join(migration.evidence)})"


def _refused(rt: Runtime, refusal: Refusal) -> None:
    """A VM PVE will not move anywhere is remembered for a while; a refused target is not
    (the next cycle's one precondition call covers every node again)."""
    if refusal.whole_vm:
        rt.store.marks.mark_unmigratable(refusal.vmid, refusal.reason,
                                         ttl=rt.timings.unmigratable_ttl)
    log.info("candidate refused by PVE", extra=event_fields(
        vmid=refusal.vmid, reason=refusal.reason, whole_vm=refusal.whole_vm))


def _record(rt: Runtime, result: CycleResult, decision: Decision,
            last: dict[str, Any] | None, stuck: set[str]) -> dict[str, float]:
    """Log every decision; keep migrate decisions and changes of 'none' in the history, the
    broken placement rules and drains for `status`, and how long each node has been
    saturated with no move (the exporter's and the notifications' source), in one round
    trip. Returns the latter."""
    log.info("decision", extra=event_fields(
        action=result.action, vmid=result.vmid, source=result.source, target=result.target,
        reason=result.reason, decision_id=result.decision_id, dry_run=result.dry_run,
        summary=result.summary))
    now = rt.clock()
    store, t = rt.store, rt.timings
    pipe = store.client.pipeline(transaction=False)
    store.cache.queue_set(pipe, VIOLATIONS_CACHE, {"at": now, "violations": [
        v.to_dict() for v in decision.violations]}, t.published_ttl)
    store.cache.queue_set(pipe, DRAINS_CACHE, {"at": now, "drains": [
        d.to_dict() for d in decision.drains]}, t.published_ttl)
    if (result.action == "migrate" or last is None
            or last.get("explanation") != list(result.explanation)):
        store.history.queue_decision(pipe, {**result.to_dict(), "at": now,
                                            "rejections": decision.rejections_by_rule()})
    _, (stuck_for,) = run_after(pipe, [
        store.stuck.observe_call(stuck, gap=t.hold_gap, ttl=t.ema_ttl)])
    return stuck_for


def _start(rt: Runtime, dispatch: Dispatcher, decision: Decision, decision_id: str) -> None:
    move = decision.move
    assert move is not None
    token = rt.store.lock.acquire(rt.timings.lock_ttl)
    if token is None:
        raise Skip("migration_in_flight", "migration lock was taken by another worker")
    m = MigrationRef(vmid=move.vmid, source=move.source, target=move.target,
                     decision_id=decision_id, reason=str(move.reason), requested_at=rt.clock(),
                     cpu_share_source=move.cpu_share_source,
                     cpu_share_target=move.cpu_share_target)
    rt.store.lock.attach(
        token, vmid=m.vmid, name=move.name, source=m.source, target=m.target, reason=m.reason,
        decision_id=m.decision_id, requested_at=m.requested_at,
        cpu_share_source=m.cpu_share_source, cpu_share_target=m.cpu_share_target)
    # Everything the end needs, in case the lock (and its info) is lost before the end.
    assert m.requested_at is not None
    rt.store.history.record_migration_event(
        MigrationEvent.of(EventKind.REQUESTED, m, m.requested_at))
    log.info("migration requested", extra=event_fields(
        vmid=move.vmid, source=move.source, target=move.target, reason=str(move.reason),
        decision_id=decision_id))
    dispatch.migrate(move.vmid, move.source, move.target, token)
