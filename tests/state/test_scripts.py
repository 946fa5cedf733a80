"""Several scripts in one round trip (issue 16), each run exactly once, on a real
redis-server, including after the server forgot its scripts (a restart)."""

from __future__ import annotations

import redis

from balancer.state import StateStore
from balancer.state.scripts import ScriptCall, run_together

INCR = "return redis.call('INCR', KEYS[1])"


def test_scripts_run_once_each_even_after_the_server_forgot_them(
        store: StateStore, raw: redis.Redis) -> None:
    script = store.client.register_script(INCR)
    calls = [ScriptCall(script, [f"{store.prefix}n{i}"], [], int) for i in range(3)]
    raw.script_flush()
    assert run_together(store.client, calls) == [1, 1, 1], "NOSCRIPT: run alone, once"
    before = int(raw.info("stats")["total_commands_processed"])
    assert run_together(store.client, calls) == [2, 2, 2]
    after = int(raw.info("stats")["total_commands_processed"])
    # 3 EVALSHA + 3 INCR inside them + our INFO: one pipeline, no SCRIPT EXISTS/LOAD.
    assert after - before == 7


def test_a_cycles_averages_in_one_round_trip_read_as_one_by_one(store: StateStore) -> None:
    calls = [
        store.ema.update_call({"pve1": 0.5}, sampled_at=10, alpha=0.5, online=["pve1"]),
        store.holds.observe_call(["pve1"], gap=15, ttl=600, now=10),
        store.guest_ema.update_call({100: 0.25}, sampled_at=10, alpha=0.5, reset_after=60,
                                    ttl_seconds=600),
    ]
    cpu, held, guests = run_together(store.client, calls)
    assert (cpu["pve1"].value, cpu["pve1"].samples) == (0.5, 1)
    assert held == {"pve1": 0.0} and guests == {100: 0.25}
    assert store.ema.readings()["pve1"].value == 0.5 and store.guest_ema.values() == guests
