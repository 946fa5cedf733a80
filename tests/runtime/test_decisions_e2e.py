"""Issue 15 end to end: real Redis, a real Celery worker and beat, the simulator over HTTPS.

- A proactive trigger needs a sustained reason: a memory spike shorter than
  `proactive_hold_seconds` moves nothing; a sustained one moves one VM, after the hold.
- Broken ProxLB anti-affinity and pins are repaired, with one move each, and then nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from balancer.state import StateStore
from tests.runtime.scenarios import cluster, vm
from tests.support.pvesim_server import finished_migrations, wait_for_cycles
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GIB = 1024**3
SPEED = 10.0
#: Real seconds (the balancer's clock is Redis's): 8 cycles of 0.5 s.
HOLD = 4.0

#: pve1 ~0.31 memory, pve2/pve3 ~0.19: calm. vm 500 growing to 30 GiB lifts pve1 to ~0.66,
#: above mean + proactive_margin (~0.55) but below memory_max: a proactive case only.
CALM = cluster([
    vm(500, "pve1", 2, 0.2, 32, mem_gib=8),
    vm(501, "pve1", 2, 0.2, 8, mem_gib=4),
    vm(502, "pve1", 2, 0.2, 8, mem_gib=4),
    vm(510, "pve2", 2, 0.2, 16, mem_gib=10),
    vm(520, "pve3", 2, 0.2, 16, mem_gib=10),
])


def _proactive_lines(store: StateStore) -> list[tuple[float, str]]:
    """(at, headline) of recorded decisions mentioning the proactive hold, oldest first."""
    return sorted((float(d["at"]), d["explanation"][0]) for d in store.history.decisions()
                  if "proactive: pve1 above" in d["explanation"][0])


def test_a_spike_shorter_than_the_hold_moves_nothing_a_sustained_one_moves_one(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(CALM, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running, proactive_hold_seconds=HOLD)
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(redis_url)
    wait_for_cycles(sim, 4)

    # A spike the balancer sees once or twice, then gone: nothing moves, the hold starts over.
    sim.set_guest_mem(500, 30 * GIB)
    wait_until(lambda: _proactive_lines(store), timeout=30, what="the spike to be seen")
    sim.set_guest_mem(500, 8 * GIB)
    wait_for_cycles(sim, 2 * int(HOLD / 0.5))
    assert sim.migration_log == [], deployment.logs()
    held = [int(m.group(1)) for _, line in _proactive_lines(store)
            if (m := re.search(r"for (\d+) of 4 s", line))]
    assert held and max(held) < HOLD, held
    assert not store.client.hexists(store.holds.hold_key, "pve1"), "the hold starts over"

    # The same spike, sustained: one VM moves, and only once pve1 was above for the hold.
    seen_before = len(_proactive_lines(store))
    sim.set_guest_mem(500, 30 * GIB)
    wait_until(lambda: finished_migrations(sim), timeout=90, what="a proactive migration")
    first_seen = _proactive_lines(store)[seen_before][0]
    requested = min(e.at for e in store.history.events() if e.kind == "requested")
    assert requested - first_seen >= HOLD - 0.25, (requested, first_seen)
    moves = finished_migrations(sim)
    assert len(moves) == 1 and moves[0].exitstatus == "OK", moves
    decision = next(d for d in store.history.decisions() if d["action"] == "migrate")
    assert decision["reason"] == "proactive" and decision["source"] == "pve1"


#: Two web VMs share pve1 against their anti-affinity tag; vm 612 is pinned to pve3 but runs
#: on pve2. Nothing is hot: only the rules call for moves.
BROKEN_RULES = cluster([
    vm(600, "pve1", 2, 0.2, 8, tags=["plb_anti_affinity_web"]),
    vm(601, "pve1", 2, 0.2, 4, tags=["plb_anti_affinity_web"]),
    vm(602, "pve2", 2, 0.2, 8, tags=["plb_anti_affinity_web"]),
    vm(610, "pve2", 2, 0.2, 8),
    vm(612, "pve2", 2, 0.2, 4, tags=["plb_pin_pve3"]),
    vm(620, "pve3", 2, 0.2, 8),
])


def test_broken_anti_affinity_and_pins_are_repaired_with_one_move_each(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any], redis_url: str
) -> None:
    running = pvesim_factory(BROKEN_RULES, speed=SPEED)
    sim = running.sim
    deployment = deployment_factory(running)
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(redis_url)

    wait_until(lambda: len(finished_migrations(sim)) >= 2 and store.lock.holder() is None,
               timeout=120, what="two repairs")
    wait_for_cycles(sim, 10)
    moves = finished_migrations(sim)
    assert sorted((m.vmid, m.target) for m in moves) == [(601, "pve3"), (612, "pve3")], (
        moves, deployment.logs())
    assert sim.guest(600).node == "pve1" and sim.guest(602).node == "pve2"
    reasons = {d["vmid"]: d["reason"] for d in store.history.decisions()
               if d["action"] == "migrate"}
    assert reasons == {601: "rule", 612: "rule"}
    assert (store.cache.get("violations") or {}).get("violations") == [], "all repaired"
