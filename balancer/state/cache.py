"""`balancer.cache.JsonCache` on Redis, so workers share slow-changing PVE reads (HA rules,
HA status, /cluster/options) for about a minute.

Layout: `P cache:<key>`, a JSON string with `PX` = the TTL given to `set`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms

log = logging.getLogger(__name__)

# What each evaluate publishes for `status`, `drains`, the exporter and the demo (one place
# for the names: the writer and every reader import them from here).
#: `{"at", "nodes": [{"name", "online", "cpu", "memory", "maxcpu", "maxmem", ...}]}`
NODES_CACHE = "nodes"
#: `{"at", "violations": [Violation.to_dict()]}`
VIOLATIONS_CACHE = "violations"
#: `{"at", "drains": [DrainProgress.to_dict()]}`
DRAINS_CACHE = "drains"


class RedisJsonCache(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)

    def cache_key(self, key: str) -> str:
        return self.key("cache", key)

    def get(self, key: str) -> Any | None:
        """The cached JSON value, or None when absent, expired or unreadable."""
        return _decoded(key, self.client.get(self.cache_key(key)))

    def queue_get(self, pipe: redis.client.Pipeline, key: str) -> None:
        """`get` queued in the caller's pipeline; read the reply with `parse(key, reply)`."""
        pipe.get(self.cache_key(key))

    @staticmethod
    def parse(key: str, reply: Any) -> Any | None:
        return _decoded(key, reply)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The readable cached values of `keys` (one MGET)."""
        if not keys:
            return {}
        raws = self.client.mget([self.cache_key(key) for key in keys])
        found = {key: _decoded(key, raw) for key, raw in zip(keys, raws, strict=True)}
        return {key: value for key, value in found.items() if value is not None}

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        """Store a JSON-serialisable value for `ttl_seconds` (<= 0: just drop the entry)."""
        self.queue_set(self.client, key, value, ttl_seconds)

    def queue_set(self, pipe: redis.Redis | redis.client.Pipeline, key: str, value: Any,
                  ttl_seconds: float) -> None:
        """`set` as a command in the caller's pipeline (or at once on a client)."""
        if ttl_seconds <= 0:
            pipe.delete(self.cache_key(key))
            return
        pipe.set(self.cache_key(key), json.dumps(value), px=to_ms(ttl_seconds))

    def delete(self, key: str) -> None:
        self.client.delete(self.cache_key(key))


def _decoded(key: str, raw: Any) -> Any | None:
    if raw is None:
        return None
    try:
        return json.loads(text(raw))
    except ValueError:
        log.warning("ignoring unreadable cache entry %r", key)
        return None
