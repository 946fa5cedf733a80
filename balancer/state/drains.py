"""Drained nodes: every worker empties them and none fills them, until `undrain`.

A drain is an operator's instruction, so it lives in the one shared Redis (like a pause)
and outlasts any worker. Its key's TTL is long and refreshed by every evaluate that reads
it, so it ends only when undrained, or when no balancer has run for `TTL` (an abandoned
installation does not come back months later to keep a node empty).

Layout: `P drains`, a hash node -> JSON `{"by", "reason", "since"}`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms

#: How long a drain survives without any evaluate reading it.
TTL = 90 * 86400.0


@dataclass(frozen=True)
class DrainEntry:
    node: str
    by: str
    reason: str
    since: float

    def describe(self) -> str:
        """What the engine and `drains` say about why: `by alice@admin1: disk swap`."""
        return f"by {self.by}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "by": self.by, "reason": self.reason, "since": self.since}


class Drains(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.drains_key = self.key("drains")

    def set(self, node: str, by: str, reason: str = "", now: float | None = None
            ) -> DrainEntry:
        """Drain `node`; draining it again keeps its original start and updates the why."""
        entry = DrainEntry(node, by, reason, self.now(now))
        previous = self.all().get(node)
        if previous is not None:
            entry = DrainEntry(node, by, reason, previous.since)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.drains_key, node, json.dumps(
            {"by": entry.by, "reason": entry.reason, "since": entry.since}))
        pipe.pexpire(self.drains_key, to_ms(TTL))
        pipe.execute()
        return entry

    def clear(self, node: str) -> bool:
        """Undrain `node`; True if it was drained."""
        return bool(self.client.hdel(self.drains_key, node))

    def all(self) -> dict[str, DrainEntry]:
        return self.parse(self.client.hgetall(self.drains_key))

    def queue_all(self, pipe: redis.client.Pipeline) -> None:
        """`all` in the caller's pipeline (read with `parse`), refreshing the TTL."""
        pipe.hgetall(self.drains_key)
        pipe.pexpire(self.drains_key, to_ms(TTL))

    @staticmethod
    def parse(reply: Any) -> dict[str, DrainEntry]:
        found: dict[str, DrainEntry] = {}
        for raw_node, raw in (reply or {}).items():
            node = text(raw_node)
            try:
                entry = json.loads(text(raw))
                found[node] = DrainEntry(node, str(entry["by"]), str(entry.get("reason") or ""),
                                         float(entry["since"]))
            except (ValueError, KeyError, TypeError):
                # Unreadable: someone meant to drain it. Keep draining until undrained.
                found[node] = DrainEntry(node, "unknown", "unreadable drain entry", 0.0)
        return found
