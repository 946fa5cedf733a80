"""What every runtime step needs: configuration, the PVE client, the state store, a clock."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from balancer.config import Config
from balancer.notify import Notifier
from balancer.pve.client import PveClient
from balancer.runtime.timings import Timings
from balancer.state import StateStore


class Dispatcher(Protocol):
    """How a step schedules the next one (Celery in production, direct calls in tests)."""

    def migrate(self, vmid: int, source: str, target: str, lock_token: str) -> None: ...

    def poll(self, upid: str, lock_token: str, countdown: float, follower: str) -> None: ...


def schedule_poll(rt: Runtime, dispatch: Dispatcher, upid: str, token: str,
                  countdown: float) -> bool:
    """Schedule the next poll of a migration as *the* follower: its id is attached to the lock
    first, and a poll carrying any other id (a redelivered copy) stops at once, so there is
    never more than one poll loop per migration. False when the lock is no longer ours."""
    follower = uuid.uuid4().hex
    if not rt.store.lock.attach(token, follower=follower):
        return False
    dispatch.poll(upid, token, countdown, follower)
    return True


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
    #: Why this process's last cycle was skipped (None: it was not), so that PVE or Redis
    #: being away is logged when it starts and when it ends, not once per cycle.
    last_skip: str | None = field(default=None, init=False)
    #: Apprise, set up on the first `balancer.notify` run of this process.
    notifier: Notifier | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.timings = Timings.from_config(self.config.balancing)
