"""Issue 17: a wrong or revoked token is said once, at WARNING, with user and host and
never the secret; the cycles after it are skipped quietly (counted in the metrics), and
the first good read is said once too."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from balancer.config import Secret
from balancer.pve.client import PveClient
from balancer.runtime import evaluate
from tests.runtime.scenarios import CPU_HOT
from tests.support.pvesim_server import PvesimFactory
from tests.support.steps import StepDispatcher, runtime_for

WRONG = "not-the-token-0000"


def test_a_wrong_token_is_one_warning_per_change(
        pvesim_factory: PvesimFactory, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    rt = runtime_for(running, redis_url)
    good = rt.client
    wrong = dataclasses.replace(rt.config.proxmox, token_value=Secret(WRONG))
    rt.client = PveClient(wrong, cache=rt.store.cache)
    dispatch = StepDispatcher()
    caplog.set_level(logging.DEBUG, logger="balancer")

    results = [evaluate(rt, dispatch) for _ in range(4)]
    assert {r.skip for r in results} == {"access_denied"}
    said = [r for r in caplog.records if r.name == "balancer.evaluate"
            and r.levelno >= logging.INFO]
    assert [(r.levelname, r.getMessage()) for r in said] == [("WARNING", "evaluate skipped")]
    reason = said[0].fields["reason"]  # type: ignore[attr-defined]
    assert f"{running.user}!{running.token_name}" in reason and running.host_port in reason
    assert WRONG not in caplog.text
    assert rt.store.metrics.snapshot().counter("skipped_cycles",
                                               {"reason": "access_denied"}) == 4

    caplog.clear()
    rt.client = good
    assert evaluate(rt, dispatch).skip is None
    assert [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("evaluate ")] == ["evaluate resumed"]
