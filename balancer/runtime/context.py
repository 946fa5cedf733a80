"""What every runtime step needs: configuration, the PVE client, the state store, a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from balancer.config import Config
from balancer.pve.client import PveClient
from balancer.runtime.timings import Timings
from balancer.state import StateStore


class Dispatcher(Protocol):
    """How a step schedules the next one (Celery in production, direct calls in tests)."""

    def migrate(self, vmid: int, source: str, target: str, lock_token: str) -> None: ...

    def poll(self, upid: str, lock_token: str, countdown: float) -> None: ...


@dataclass
class Runtime:
    config: Config
    client: PveClient
    store: StateStore
    clock: Callable[[], float] = time.time
    timings: Timings = field(init=False)
    #: PVE's HA auto-rebalance as last seen by this process (None: not read yet), so the
    #: change is announced once, not every cycle.
    pve_auto_rebalance: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.timings = Timings.from_config(self.config.balancing)
