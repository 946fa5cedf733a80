"""Driving the runtime's steps directly (no Celery): evaluate, migrate and poll are plain
functions of a `Runtime`, run here against the real Redis and the simulator over HTTPS.

`StepDispatcher` keeps what a step schedules instead of sending Celery messages, so a test
decides what runs next, runs it twice (a redelivered message), or never (a killed worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from balancer.config import parse_config
from balancer.migrations import MigrationEvent
from balancer.pve.client import PveClient
from balancer.runtime import Runtime, evaluate, poll_migration, start_migration
from balancer.runtime.results import CycleResult, StepResult
from balancer.state import StateStore
from tests.support.celery_worker import FAST_BALANCING
from tests.support.pvesim_server import RunningSim


@dataclass(frozen=True)
class Step:
    kind: str  # "migrate" or "poll"
    args: tuple[Any, ...]


@dataclass
class StepDispatcher:
    """A `Dispatcher` that queues the next steps for the test to run."""

    pending: list[Step] = field(default_factory=list)

    def migrate(self, vmid: int, source: str, target: str, lock_token: str) -> None:
        self.pending.append(Step("migrate", (vmid, source, target, lock_token)))

    def poll(self, upid: str, lock_token: str, countdown: float, follower: str) -> None:
        self.pending.append(Step("poll", (upid, lock_token, follower)))

    def take(self, kind: str) -> Step:
        """The oldest pending step of `kind` (it must exist)."""
        step = next(s for s in self.pending if s.kind == kind)
        self.pending.remove(step)
        return step

    def run(self, rt: Runtime, step: Step) -> StepResult:
        if step.kind == "migrate":
            return start_migration(rt, self, *step.args)
        return poll_migration(rt, self, *step.args)


def runtime_for(running: RunningSim, redis_url: str, client_cls: type[PveClient] = PveClient,
                pve_timeout: float = 5.0, **balancing: Any) -> Runtime:
    """A runtime as a worker builds it, with a PVE client that retries quickly (the faults
    the tests inject are not worth real seconds of backoff)."""
    config = parse_config({
        "proxmox": {"hosts": [running.host_port], "user": running.user,
                    "token_name": running.token_name, "token_value": running.token_value,
                    "verify_ssl": False, "timeout_seconds": pve_timeout},
        "redis": {"url": redis_url},
        "balancing": {**FAST_BALANCING, **balancing},
    }, env={})
    store = StateStore.from_url(redis_url)
    client = client_cls(config.proxmox, cache=store.cache, backoff_base=0.01, backoff_cap=0.05,
                        confirm_delay=0.05)
    return Runtime(config=config, client=client, store=store)


def evaluate_until_migrate(rt: Runtime, dispatch: StepDispatcher,
                           tries: int = 10) -> CycleResult:
    """Evaluate until a migration is requested (the CPU trigger first needs a few EMA samples;
    every call is a new sample because it is taken at a new instant)."""
    result = None
    for _ in range(tries):
        result = evaluate(rt, dispatch)
        if result.action == "migrate":
            return result
    raise AssertionError(f"no migration decided after {tries} cycles: {result}")


def migration_events(rt: Runtime) -> list[MigrationEvent]:
    """The migration events of the history, oldest first."""
    return list(reversed(rt.store.history.events()))
