"""The triggers, in rule order: rule repair (`repair.py`), sustained CPU, memory above
`memory_max`, proactive memory spreading. Each classifies nodes, orders sources and
candidates, and hands every candidate to the shared filter -> score pipeline; the first valid
move wins.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Sequence
from typing import Protocol

from balancer.config import BalancingConfig
from balancer.model import ClusterSnapshot, Guest, GuestType, Node

from .context import Context
from .eligibility import guest_rejections
from .explain import Report
from .filters import EPSILON, SOURCE_FILTERS, first_node_rejection
from .pipeline import Pipeline
from .rules import Rule, reject
from .types import CandidateVerdict, CpuReading, Move, Rejection, Trigger, TriggerFired
from .views import NodeView, cpu_share

SourceCheck = Callable[[Guest], Rejection | None]
Order = Callable[[list[Guest], NodeView], list[Guest]]


class Strategy(Protocol):
    trigger: Trigger

    def evaluate(self, pipe: Pipeline, report: Report) -> Move | None: ...


# --- shared per-source recipe ---------------------------------------------------------------

def drain(node: Node, trigger: Trigger, pipe: Pipeline, report: Report,
          order: Order, source_checks: Sequence[SourceCheck] = ()) -> Move | None:
    """Try to move one guest off `node`: source filters, screen guests, order, place."""
    rejection = first_node_rejection(SOURCE_FILTERS, node, pipe.ctx)
    if rejection is not None:
        report.skip_source(str(trigger), rejection)
        return None
    source = pipe.ctx.views[node.name]
    if (closed := no_open_target(source, trigger, pipe)) is not None:
        report.skip_source(str(trigger), closed)
        return None
    eligible = screen(node.name, trigger, pipe.ctx, report, source_checks)
    return first_placeable(order(eligible, source), source, trigger, pipe, report)


def no_open_target(source: NodeView, trigger: Trigger, pipe: Pipeline) -> Rejection | None:
    """Every other node is closed to every guest by a node check (all hot, all full): no
    need to weigh the source's guests one by one (that is most of an all-hot cycle)."""
    closed = pipe.closed_to(source.name)
    if closed is None:
        return None
    total = sum(closed.values())
    why = ", ".join(f"{n} {rule}" for rule, n in sorted(closed.items(),
                                                        key=lambda item: (-item[1], item[0])))
    return reject(Rule.NO_OPEN_TARGET, source.name,
                  f"has no node to move to ({total} closed: {why})" if total
                  else "has no other node")


def screen(source: str, trigger: Trigger, ctx: Context, report: Report,
           source_checks: Sequence[SourceCheck]) -> list[Guest]:
    """Guests on `source` that may move; the others are reported with all their reasons."""
    guests = sorted(ctx.guests_on(source), key=lambda g: g.vmid)
    eligible: list[Guest] = []
    rejected: list[CandidateVerdict] = []
    for guest in guests:
        found = guest_rejections(guest, ctx) + tuple(
            r for r in (check(guest) for check in source_checks) if r is not None)
        if found:
            rejected.append(CandidateVerdict(guest.vmid, guest.name, source, trigger, found))
        else:
            eligible.append(guest)
    report.screened(source, rejected, len(guests))
    return eligible


def first_placeable(ordered: list[Guest], source: NodeView, trigger: Trigger, pipe: Pipeline,
                    report: Report) -> Move | None:
    """Candidates in preference order; the first with a valid target is the move."""
    for index, guest in enumerate(ordered):
        verdict = pipe.place(guest, source, trigger)
        report.candidate(verdict)
        if verdict.target is not None:
            if rest := len(ordered) - index - 1:
                plural = "s" if rest != 1 else ""
                report.note(f"{source.name}: {rest} later candidate{plural} not evaluated")
            return pipe.move(guest, verdict)
    if not ordered:
        report.note(f"{trigger}: {source.name} has no eligible guest")
    return None


# --- rule 1: sustained CPU ------------------------------------------------------------------

def busiest_vm(guests: Sequence[Guest]) -> Guest | None:
    """The VM using most host threads (ties: more memory, lower vmid). It stays put so the
    moves free room for it."""
    vms = [g for g in guests if g.type is GuestType.QEMU]
    return min(vms, key=lambda g: (-g.cpu_cores, -g.host_memory, g.vmid), default=None)


def cpu_order(cpu_max: float, safety_margin: float = 0.0,
              moved_recently: Container[int] = ()) -> Order:
    """Single moves that leave the source with headroom (<= cpu_max - safety_margin), least
    memory first; then single moves that reach cpu_max, the most relief first; then the most
    relief. Preferring headroom, and else landing as far under cpu_max as one move can,
    avoids nibbling: a move that lands the source just under the threshold is undone by the
    next fluctuation and costs another migration (the big benchmark shed one more VM per
    node that way). A VM moved within `return_window_seconds` comes after equally good ones
    that were not (moving the same VM again is the churn a person undoes): among the moves
    that leave headroom, before the memory they copy; elsewhere only among reliefs within a
    point of the node's threads of each other (closer than the averages' noise), never
    before a clearly bigger relief."""

    def order(eligible: list[Guest], source: NodeView) -> list[Guest]:
        def tier(g: Guest) -> int:
            after = source.cpu - cpu_share(g, source)
            return 0 if after <= cpu_max - safety_margin else 1 if after <= cpu_max else 2

        def key(g: Guest) -> tuple[float, ...]:
            rank, moved = tier(g), g.vmid in moved_recently
            if rank == 0:
                return (rank, moved, g.host_memory, g.vmid)
            relief = cpu_share(g, source)
            return (rank, -round(relief, 2), moved, -relief, g.host_memory, g.vmid)

        return sorted(eligible, key=key)

    return order


def cpu_source_checks(node: Node, guests: Sequence[Guest]) -> tuple[SourceCheck, ...]:
    """CPU-only guest checks: the busiest VM stays, and a move must relieve some CPU."""
    busiest = busiest_vm(guests)

    def not_busiest(g: Guest) -> Rejection | None:
        if busiest is None or g.vmid != busiest.vmid:
            return None
        return reject(Rule.BUSIEST, f"vm {g.vmid}",
                      f"is the busiest VM on {node.name} ({g.cpu_cores:.2f} cores): it stays",
                      g.cpu_cores)

    def relieves_cpu(g: Guest) -> Rejection | None:
        if cpu_share(g, node) > 0:
            return None
        return reject(Rule.NO_CPU_RELIEF, f"vm {g.vmid}", f"uses no CPU on {node.name}", 0.0)

    return (not_busiest, relieves_cpu)


class CpuTrigger:
    trigger = Trigger.CPU

    def evaluate(self, pipe: Pipeline, report: Report) -> Move | None:
        ctx = pipe.ctx
        hot = self.hot_nodes(ctx, report)
        if not hot:
            report.outcome(self.calm(ctx))
            return None
        tried = []
        for node, reading in hot:
            if not self.ready(node, reading, ctx, report):
                continue
            tried.append(node.name)
            guests = ctx.guests_on(node.name)
            order = cpu_order(ctx.config.cpu_max, ctx.config.safety_margin, ctx.left_recently)
            move = drain(node, self.trigger, pipe, report, order,
                         cpu_source_checks(node, guests))
            if move is not None:
                return move
        if tried:
            report.outcome(f"cpu: no valid move off {', '.join(tried)}")
        else:
            waiting = ", ".join(n.name for n, _ in hot)
            report.outcome(f"cpu: {waiting} above cpu_max, but the EMA is still warming up")
        return None

    @staticmethod
    def hot_nodes(ctx: Context, report: Report) -> list[tuple[Node, CpuReading]]:
        """Online nodes whose EMA exceeds cpu_max, hottest first; a node a move brought under
        it counts only above the hysteresis band."""
        hot = []
        for node in ctx.online:
            reading = ctx.readings.get(node.name)
            if reading is None:
                if node.cpu > ctx.config.cpu_max:
                    report.note(f"cpu: {node.name} at {node.cpu:.2f} > cpu_max "
                                f"{ctx.config.cpu_max:.2f} but has no EMA history yet")
            elif reading.value > ctx.config.cpu_max:
                if CpuTrigger.settling(node, reading, ctx, report):
                    continue
                hot.append((node, reading))
        return sorted(hot, key=lambda pair: (-pair[1].value, pair[0].name))

    @staticmethod
    def settling(node: Node, reading: CpuReading, ctx: Context, report: Report) -> bool:
        """A node a move brought under cpu_max, whose EMA has stayed within cpu_hysteresis of
        it since, is settling, not sustained above: the noise of its EMA would otherwise shed
        one more VM than the relief needed (a move nobody asked for)."""
        cfg = ctx.config
        ceiling = cfg.cpu_max + cfg.cpu_hysteresis
        if not reading.relieved or reading.value > ceiling:
            return False
        report.skip_source("cpu", reject(
            Rule.CPU_HYSTERESIS, node.name,
            f"EMA {reading.value:.3f} > cpu_max {cfg.cpu_max:.2f} within the hysteresis band "
            f"since a move relieved it: it fires again above {ceiling:.2f}",
            reading.value, ceiling))
        return True

    @staticmethod
    def ready(node: Node, reading: CpuReading, ctx: Context, report: Report) -> bool:
        """The EMA must hold enough samples, unless it is an explicit one-off measurement."""
        cfg, name, value = ctx.config, node.name, reading.value
        if not reading.from_measurement and reading.samples < cfg.ema_min_samples:
            report.skip_source("cpu", reject(
                Rule.EMA_WARMING_UP, name,
                f"EMA {value:.2f} > cpu_max {cfg.cpu_max:.2f} from only {reading.samples}/"
                f"{cfg.ema_min_samples} samples: waiting for a steadier reading",
                reading.samples, cfg.ema_min_samples))
            return False
        note = (" (from a one-off measurement, no EMA history)" if reading.from_measurement
                else f" ({reading.samples} samples)")
        report.fire(TriggerFired(Trigger.CPU, name, value, cfg.cpu_max, note.strip(" ()")),
                    f"cpu: {name} EMA {value:.2f} > cpu_max {cfg.cpu_max:.2f}{note}")
        return True

    @staticmethod
    def calm(ctx: Context) -> str:
        cpu_max = ctx.config.cpu_max
        read = [(r.value, n.name) for n in ctx.online if (r := ctx.readings.get(n.name))]
        if not read:
            return f"cpu: no node above cpu_max {cpu_max:.2f} (no CPU history yet)"
        settling = sorted(name for value, name in read
                          if value > cpu_max and ctx.readings[name].relieved)
        if settling:
            return (f"cpu: no node sustained above cpu_max {cpu_max:.2f} ({', '.join(settling)} "
                    f"settling within cpu_hysteresis {ctx.config.cpu_hysteresis:.2f})")
        value, name = min(read, key=lambda pair: (-pair[0], pair[1]))
        return f"cpu: no node above cpu_max {cpu_max:.2f} (hottest {name} EMA {value:.2f})"


# --- rules 2 and 3: memory ------------------------------------------------------------------

def moves_needed(freed_largest_first: Sequence[int], excess: float) -> int | None:
    """Fewest guests (by the memory each frees, given largest first) that free `excess`
    bytes; None when even all of them do not."""
    total = 0
    for count, size in enumerate(freed_largest_first, start=1):
        total += size
        if total >= excess:
            return count
    return None


def random_within_fewest_moves(rng: random.Random, limit: float = float("inf"),
                               moved_recently: Container[int] = ()) -> Order:
    """A random order from a seeded RNG: "a random eligible VM that has a valid target".
    VMs that belong to some fewest-moves way of bringing the source to `limit` come first (in
    random order among themselves), the others after them: the same random choice, without
    spending several migrations where fewer suffice. With one move enough, these are the VMs
    whose move alone relieves the node. Within each group, VMs moved within
    `return_window_seconds` come last (the same VM moved again is churn)."""

    def order(eligible: list[Guest], source: NodeView) -> list[Guest]:
        ordered = sorted(eligible, key=lambda g: g.vmid)
        rng.shuffle(ordered)
        excess = source.mem - limit * source.maxmem
        freed = sorted((g.host_memory for g in eligible), reverse=True)
        needed = moves_needed(freed, excess)
        if excess <= 0 or needed is None:
            return sorted(ordered, key=lambda g: g.vmid in moved_recently)
        best_rest = sum(freed[:needed - 1])  # the largest others, if `g` is not among them
        with_kth = best_rest + freed[needed - 1]

        def in_a_fewest_plan(g: Guest) -> bool:
            among_largest = needed > 1 and g.host_memory >= freed[needed - 2]
            rest = with_kth - g.host_memory if among_largest else best_rest
            return g.host_memory + rest >= excess

        return sorted(ordered, key=lambda g: (not in_a_fewest_plan(g), g.vmid in moved_recently))

    return order


class MemoryTrigger:
    trigger = Trigger.MEMORY

    def threshold(self, ctx: Context) -> tuple[float, str]:
        limit = ctx.config.memory_max
        return limit, f"memory_max {limit:.2f}"

    def blocked_by(self, ctx: Context) -> str | None:
        """A sentence if this trigger may not run at all."""
        return None

    def evaluate(self, pipe: Pipeline, report: Report) -> Move | None:
        ctx, name = pipe.ctx, str(self.trigger)
        if (reason := self.blocked_by(ctx)) is not None:
            report.outcome(f"{name}: {reason}")
            return None
        limit, label = self.threshold(ctx)
        ranked = sorted(ctx.online, key=lambda n: (-n.memory_ratio, n.name))
        over = [n for n in ranked if n.memory_ratio > limit]
        if not over:
            top = f" (highest {ranked[0].name} {ranked[0].memory_ratio:.2f})" if ranked else ""
            report.outcome(f"{name}: no node above {label}{top}")
            return None
        order = random_within_fewest_moves(random.Random(ctx.seed), limit, ctx.left_recently)
        waiting: list[Rejection] = []
        for node in over:
            report.fire(TriggerFired(self.trigger, node.name, node.memory_ratio, limit),
                        f"{name}: {node.name} memory {node.memory_ratio:.2f} > {label}")
            if (wait := self.still_holding(node, limit, ctx)) is not None:
                report.skip_source(name, wait)
                waiting.append(wait)
                continue
            if (move := drain(node, self.trigger, pipe, report, order)) is not None:
                return move
        held_back = {w.subject for w in waiting}
        tried = [n.name for n in over if n.name not in held_back]
        sentences = [f"{name}: {w.message.removeprefix(f'{w.rule}: ')}" for w in waiting]
        if tried:
            sentences.append(f"{name}: no valid move off {', '.join(tried)}")
        report.outcome("; ".join(sentences))
        return None

    def still_holding(self, node: Node, limit: float, ctx: Context) -> Rejection | None:
        """Why `node` must stay above a while longer before it sheds (None: it may now)."""
        return None


class ProactiveTrigger(MemoryTrigger):
    """Only in a calm cluster: shed memory from a node far above the cluster mean."""

    trigger = Trigger.PROACTIVE

    def threshold(self, ctx: Context) -> tuple[float, str]:
        margin = ctx.config.proactive_margin
        mean, limit = proactive_threshold(ctx.online, margin)
        return limit, f"mean memory {mean:.2f} + proactive_margin {margin:.2f} = {limit:.2f}"

    def still_holding(self, node: Node, limit: float, ctx: Context) -> Rejection | None:
        """A voluntary move needs a sustained reason: the node must have stayed above for
        `proactive_hold` seconds of consecutive cycles (a spike that ends moves nothing)."""
        held, hold = ctx.proactive_held, ctx.config.proactive_hold
        if held is None:
            return None  # not tracked by this caller (see EngineInput.proactive_held)
        seconds = held.get(node.name, 0.0)
        if seconds + EPSILON >= hold:
            return None
        return reject(Rule.PROACTIVE_HOLD, node.name,
                      f"above {limit:.2f} for {seconds:.0f} of {hold:.0f} s", seconds, hold)

    def blocked_by(self, ctx: Context) -> str | None:
        cfg = ctx.config
        if not cfg.proactive:
            return "off (balancing.proactive: false)"
        for node in ctx.online:
            view = ctx.views[node.name]
            if view.cpu > cfg.cpu_max:
                return f"skipped, {node.name} cpu {view.cpu:.2f} above cpu_max {cfg.cpu_max:.2f}"
            if view.memory > cfg.memory_max:
                return (f"skipped, {node.name} memory {view.memory:.2f} above memory_max "
                        f"{cfg.memory_max:.2f}")
        return None


def proactive_threshold(nodes: Sequence[Node], margin: float) -> tuple[float, float]:
    """(mean memory ratio, proactive threshold) over `nodes` (the online ones)."""
    mean = sum(n.memory_ratio for n in nodes) / len(nodes) if nodes else 0.0
    return mean, mean + margin


def above_proactive(snapshot: ClusterSnapshot, config: BalancingConfig) -> list[str]:
    """Online nodes above the proactive threshold now: the runtime records, across cycles,
    how long each has stayed there (`EngineInput.proactive_held`)."""
    online = [n for n in snapshot.nodes if n.online]
    _, limit = proactive_threshold(online, config.proactive_margin)
    return sorted(n.name for n in online if n.memory_ratio > limit)

