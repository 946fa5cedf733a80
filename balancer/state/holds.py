"""How long each node has stayed above a threshold, over consecutive evaluations.

A voluntary move needs a sustained reason: the proactive trigger acts only on a node that has
been above its threshold for `balancing.proactive_hold_seconds` (PVE 9.2's own balancer waits
`hold-duration` rounds likewise). Kept in Redis so a worker restart does not restart the hold.

Layout: `P holds:<name>`, a hash node -> JSON `{"since": t, "seen": t}` (the store's clock),
with a TTL. A node seen below, or not seen for `gap` seconds (cycles were skipped, so the
evaluations were not consecutive), starts over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, text_dict, to_ms

PROACTIVE = "proactive"


class Holds(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time, name: str = PROACTIVE) -> None:
        super().__init__(client, prefix, clock)
        self.hold_key = self.key("holds", name)

    def observe(self, above: Iterable[str], gap: float, ttl: float,
                now: float | None = None) -> dict[str, float]:
        """Record one evaluation's nodes above the threshold; node -> seconds held so far
        (0 for a node that just went above). Two round trips whatever the node count."""
        t = self.now(now)
        held = self._held(self._read(), set(above), gap, t)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.hold_key)
        if held:
            pipe.hset(self.hold_key, mapping={
                node: json.dumps({"since": t - seconds, "seen": t})
                for node, seconds in held.items()})
            pipe.pexpire(self.hold_key, to_ms(ttl))
        pipe.execute()
        return held

    def peek(self, above: Iterable[str], gap: float, now: float | None = None
             ) -> dict[str, float]:
        """What `observe` would return, without recording (a hand-run `plan`)."""
        return self._held(self._read(), set(above), gap, self.now(now))

    def _read(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for node, raw in text_dict(self.client.hgetall(self.hold_key)).items():
            try:
                entry = json.loads(text(raw))
                out[node] = (float(entry["since"]), float(entry["seen"]))
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: that node's hold starts over
        return out

    @staticmethod
    def _held(known: Mapping[str, tuple[float, float]], above: set[str], gap: float,
              now: float) -> dict[str, float]:
        held: dict[str, float] = {}
        for node in sorted(above):
            since, seen = known.get(node, (now, now))
            held[node] = max(0.0, now - since) if now - seen <= gap else 0.0
        return held

    def clear(self) -> None:
        self.client.delete(self.hold_key)
