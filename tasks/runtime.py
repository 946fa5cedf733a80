"""One `Runtime` per worker process, created lazily after the fork (Redis and HTTP sessions
must not be shared across processes)."""

from __future__ import annotations

import os

from balancer.config import Config
from balancer.pve.client import PveClient
from balancer.runtime import Runtime
from balancer.state import StateStore

_runtime: tuple[int, Runtime] | None = None


def get_runtime(config: Config) -> Runtime:
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        store = StateStore.from_url(config.redis.url.reveal())
        # One clock for every host: Redis's (the store's), for PVE's cache stamps as well.
        client = PveClient(config.proxmox, cache=store.cache, clock=store.clock)
        _runtime = (os.getpid(), Runtime(config=config, client=client, store=store,
                                         clock=store.clock))
    return _runtime[1]
