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
from typing import Any

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text, text_dict, to_ms
from balancer.state.scripts import ScriptCall

PROACTIVE = "proactive"
#: Nodes saturated with no valid move (notified after `notifications.stuck_after_seconds`).
STUCK = "stuck"

# KEYS[1] hash. ARGV: now, gap, ttl ms, nodes above... Returns node, seconds held, ...
_OBSERVE = """
local now = tonumber(ARGV[1])
local gap = tonumber(ARGV[2])
local out = {}
local keep = {}
for i = 4, #ARGV do
  local node = ARGV[i]
  local since = now
  local raw = redis.call('HGET', KEYS[1], node)
  if raw then
    local ok, d = pcall(cjson.decode, raw)
    if ok and type(d) == 'table' and tonumber(d.since) and tonumber(d.seen)
        and now - tonumber(d.seen) <= gap then
      since = tonumber(d.since)
    end
  end
  keep[#keep + 1] = node
  keep[#keep + 1] = string.format('{"since":%.17g,"seen":%.17g}', since, now)
  out[#out + 1] = node
  out[#out + 1] = string.format('%.17g', math.max(0, now - since))
end
redis.call('DEL', KEYS[1])
if #keep > 0 then
  redis.call('HSET', KEYS[1], unpack(keep))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return out
"""


class Holds(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time, name: str = PROACTIVE) -> None:
        super().__init__(client, prefix, clock)
        self.hold_key = self.key("holds", name)
        self._observe = client.register_script(_OBSERVE)

    def observe(self, above: Iterable[str], gap: float, ttl: float,
                now: float | None = None) -> dict[str, float]:
        """See `observe_call`; one round trip."""
        return self.observe_call(above, gap, ttl, now).run()

    def observe_call(self, above: Iterable[str], gap: float, ttl: float,
                     now: float | None = None) -> ScriptCall[dict[str, float]]:
        """Record one evaluation's nodes above the threshold; node -> seconds held so far
        (0 for a node that just went above). One script, atomic."""
        t = self.now(now)
        return ScriptCall(self._observe, [self.hold_key], [
            number(t, "now"), number(gap, "gap"), to_ms(ttl), *sorted(set(above))], _parse_held)

    def peek(self, above: Iterable[str], gap: float, now: float | None = None
             ) -> dict[str, float]:
        """What `observe` would return, without recording (a hand-run `plan`)."""
        return self._held(self._read(), set(above), gap, self.now(now))

    def held(self) -> dict[str, float]:
        """Seconds each node had been above as of its latest observation (the exporter's
        view: the observe script keeps only the nodes above at the latest evaluation)."""
        return {node: max(0.0, seen - since) for node, (since, seen) in self._read().items()}

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


def _parse_held(reply: Any) -> dict[str, float]:
    pairs = [text(item) for item in reply]
    return {pairs[i]: float(pairs[i + 1]) for i in range(0, len(pairs), 2)}
