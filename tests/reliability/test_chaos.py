"""Chaos: a seeded schedule of faults at every stage of balancing, with 2 workers and 2 beats
(one of each with a skewed clock) behind a hung and a dead first PVE host.

Faults: SIGKILL and SIGSTOP (past the lock's TTL) of workers and beats, Redis restarts with
and without its data, FLUSHALL, API 5xx, slow answers, truncated JSON. Invariants, from the
simulator's record and Redis: never two of our migrations in flight, never a POST while one
runs, each decision's end recorded at most once, no lock outliving its owner, recovery (the
cluster relieved) within a bound once the faults stop, and no crash loop.

The short schedule runs in `make test`; `CHAOS_EVENTS=60 CHAOS_SEED=n pytest
tests/reliability/test_chaos.py` runs a long one (its figures are in the README).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from balancer.state import StateStore
from tests.reliability.cluster import TWO_HOT, our_moves, wait_for_cycles
from tests.support.celery_worker import BalancerDeployment, CeleryProcess
from tests.support.pvesim_server import RunningSim
from tests.support.redis_server import RedisServer, free_port, wait_until

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CHAOS_SEED", "20"))
EVENTS = int(os.environ.get("CHAOS_EVENTS", "0"))  # 0: each fault once, shuffled
SPEED = 10.0
FAULTS = ("kill_worker", "stop_worker", "kill_beat", "stop_beat", "redis_restart",
          "redis_restart_lost", "flushall", "api_5xx", "slow", "truncated")
ENDS = ("succeeded", "failed", "aborted")


class Chaos:
    """Applies one fault at a time and keeps the processes it replaced."""

    def __init__(self, deployment: BalancerDeployment, running: RunningSim,
                 server: RedisServer, rng: random.Random) -> None:
        self.deployment, self.running, self.server, self.rng = deployment, running, server, rng
        self.workers = [deployment.start_worker(), deployment.start_worker(clock_offset=3600)]
        self.beats = [deployment.start_beat(), deployment.start_beat(clock_offset=-30)]
        self.killed: list[CeleryProcess] = []
        self.applied: Counter[str] = Counter()

    def cycles(self, n: int) -> None:
        wait_for_cycles(self.running.sim, n, timeout=90)

    def apply(self, fault: str) -> None:
        self.applied[fault] += 1
        getattr(self, fault)()
        self.cycles(4)  # balancing goes on between faults

    def _replace(self, pool: list[CeleryProcess], i: int, start: Callable[[], CeleryProcess],
                 ) -> None:
        pool[i].kill(signal.SIGKILL)
        self.killed.append(pool[i])
        pool[i] = start()

    def kill_worker(self) -> None:
        i = self.rng.randrange(2)
        offset = 3600 if i == 1 else 0
        self._replace(self.workers, i, lambda: self.deployment.start_worker(clock_offset=offset))

    def kill_beat(self) -> None:
        i = self.rng.randrange(2)
        offset = -30 if i == 1 else 0
        self._replace(self.beats, i, lambda: self.deployment.start_beat(clock_offset=offset))

    def _stopped(self, proc: CeleryProcess) -> None:
        """Frozen past the migration lock's TTL (6 s here: 12 cycles of 0.5 s), then resumed."""
        proc.kill(signal.SIGSTOP)
        try:
            self.cycles(14)
        finally:
            proc.kill(signal.SIGCONT)

    def stop_worker(self) -> None:
        self._stopped(self.workers[self.rng.randrange(2)])

    def stop_beat(self) -> None:
        self._stopped(self.beats[self.rng.randrange(2)])

    def redis_restart(self) -> None:
        self.server.restart()

    def redis_restart_lost(self) -> None:
        """A restart that loses everything (no persistence, or a lost volume)."""
        redis.Redis.from_url(self.server.url).flushall()
        self.server.restart()

    def flushall(self) -> None:
        redis.Redis.from_url(self.server.url).flushall()

    def _faulty_api(self, **faults: Any) -> None:
        self.running.sim.set_faults(**faults)
        try:
            self.cycles(6)
        finally:
            self.running.sim.clear_faults()

    def api_5xx(self) -> None:
        self._faulty_api(error_rate=0.3, error_status=self.rng.choice([500, 502, 503]))

    def slow(self) -> None:
        self._faulty_api(latency_seconds=2.0,
                         paths=[r"/status/current$", r"/migrate$", r"^/cluster/resources$"])

    def truncated(self) -> None:
        self._faulty_api(truncate_rate=0.3)


def _overlaps(running: RunningSim) -> list[tuple[str, str]]:
    moves = sorted(our_moves(running), key=lambda m: m.started)
    return [(a.upid, b.upid) for a, b in itertools.pairwise(moves)
            if a.ended is None or b.started < a.ended]


def _posts_during_a_migration(running: RunningSim) -> list[Any]:
    """Our migrate POSTs that reached PVE while another of our migrations ran there (the
    request is logged when answered: the task it started began a moment before)."""
    token_id = f"{running.user}!{running.token_name}"
    moves = our_moves(running)

    def its_own(move: Any, post: Any) -> bool:
        return f"/qemu/{move.vmid}/" in post.path and post.sim_time - move.started < 2.0

    return [r for r in running.sim.request_log
            if r.method == "POST" and r.path.endswith("/migrate") and r.user == token_id
            and any(m.started < r.sim_time < (m.ended or float("inf")) and not its_own(m, r)
                    for m in moves)]


def _relieved(store: StateStore) -> bool:
    nodes = (store.cache.get("nodes") or {}).get("nodes", [])
    return bool(nodes) and store.lock.holder() is None and all(
        n["cpu"] < 0.8 for n in nodes if n["online"])


@pytest.mark.timeout(300 + 45 * max(EVENTS, len(FAULTS)))
def test_chaos(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
    redis_server_factory: Callable[..., RedisServer], hung_host: str,
) -> None:
    rng = random.Random(SEED)
    server = redis_server_factory(appendonly=True)
    running = pvesim_factory(TWO_HOT, speed=SPEED, seed=SEED)
    dead_host = f"127.0.0.1:{free_port()}"
    deployment = deployment_factory(running, redis=server.url,
                                    hosts_first=(hung_host, dead_host))
    chaos = Chaos(deployment, running, server, rng)
    chaos.cycles(4)
    schedule = ([rng.choice(FAULTS) for _ in range(EVENTS)] if EVENTS
                else rng.sample(FAULTS, len(FAULTS)))
    for fault in schedule:
        chaos.apply(fault)

    store = StateStore.from_url(server.url)
    wait_until(lambda: _relieved(store), timeout=120, interval=0.5,
               what="the cluster relieved once the faults stopped")
    chaos.cycles(6)

    assert _overlaps(running) == [], "two of our migrations were in flight at once"
    assert _posts_during_a_migration(running) == [], "a POST while a migration ran"
    events = store.history.events()
    per_decision = Counter(e.decision_id for e in events
                           if e.kind in ENDS and e.decision_id)
    assert all(n == 1 for n in per_decision.values()), per_decision
    per_upid = Counter(e.upid for e in events
                       if e.kind == "succeeded" and e.upid)
    assert all(n == 1 for n in per_upid.values()), per_upid
    assert store.lock.holder() is None, "the lock outlived its owner"
    for proc in deployment.processes:
        if proc not in chaos.killed:
            assert proc.alive(), f"{proc.name} exited:\n{proc.log()[-3000:]}"
            assert "Unrecoverable error" not in proc.log()
    print(f"chaos seed {SEED}: {dict(chaos.applied)}; {len(our_moves(running))} migrations, "
          f"{len(per_decision)} recorded ends, "
          f"{sum(1 for r in running.sim.request_log if r.path == '/cluster/resources')} cycles")
