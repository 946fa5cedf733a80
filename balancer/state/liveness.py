"""When the last evaluate ran: the one fact that says balancing is alive.

Layout: `P last-evaluate`, a JSON `{"at": epoch seconds by the store's (Redis's) clock,
"action": migrate|none|skipped}`, kept 30 days. Every evaluate writes it, skipped ones too;
`status`, the exporter and the container health check read it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from balancer.logs import rfc3339
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms

TTL_SECONDS = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class LastEvaluate:
    at: float
    action: str
    age_seconds: float

    @property
    def at_iso(self) -> str:
        """RFC 3339 UTC with milliseconds, e.g. `2026-12-05T23:40:00.123Z` (as the logs)."""
        return rfc3339(self.at)


class Liveness(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.stamp_key = self.key("last-evaluate")

    def stamp(self, action: str, now: float | None = None) -> None:
        self.queue_stamp(self.client, action, now)

    def queue_stamp(self, pipe: redis.Redis | redis.client.Pipeline, action: str,
                    now: float | None = None) -> None:
        """`stamp` as a command in the caller's pipeline (or at once on a client)."""
        payload = json.dumps({"at": self.now(now), "action": action})
        pipe.set(self.stamp_key, payload, px=to_ms(TTL_SECONDS))

    def last(self, now: float | None = None) -> LastEvaluate | None:
        raw = self.client.get(self.stamp_key)
        if raw is None:
            return None
        try:
            entry = json.loads(text(raw))
            at, action = float(entry["at"]), str(entry["action"])
        except (ValueError, KeyError, TypeError):
            return None
        return LastEvaluate(at=at, action=action, age_seconds=max(0.0, self.now(now) - at))
