"""Liveness of the migration follower (the poller task).

Layout: `P heartbeat:N` (default N = `poller`), a hash {token, at} with `PX` = the beat TTL.
The token is the migration-lock token of the follower; a beat by another token is refused, so
a poller that was presumed dead and taken over (`MigrationLock.take_over`) learns it must stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text_dict, to_ms

POLLER = "poller"

_BEAT = """
local current = redis.call('HGET', KEYS[1], 'token')
if current and current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_STOP = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class HeartbeatInfo:
    """The last beat (epoch seconds) and how long until it is considered dead."""

    at: float | None
    ttl_remaining: float


class Heartbeat(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, name: str = POLLER,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.name = name
        self.hb_key = self.key("heartbeat", name)
        self._beat = client.register_script(_BEAT)
        self._stop = client.register_script(_STOP)

    def beat(self, token: str, ttl_seconds: float, now: float | None = None) -> bool:
        """Say "alive" for `ttl_seconds`. False (and nothing written) when another token is
        beating: this follower was taken over and must stop."""
        ok = self._beat(keys=[self.hb_key],
                        args=[token, to_ms(ttl_seconds), number(self.now(now), "now")])
        return bool(ok == 1)

    def alive(self) -> bool:
        """Whether any follower beat within its TTL."""
        return bool(self.client.exists(self.hb_key))

    def info(self) -> HeartbeatInfo | None:
        pipe = self.client.pipeline(transaction=True)
        pipe.pttl(self.hb_key)
        pipe.hgetall(self.hb_key)
        pttl, raw = pipe.execute()
        if int(pttl) == -2:
            return None
        at = text_dict(raw).get("at")
        return HeartbeatInfo(at=float(at) if at is not None else None,
                             ttl_remaining=max(0.0, int(pttl) / 1000.0))

    def stop(self, token: str) -> bool:
        """Remove the heartbeat if `token` is the one beating (the follower finished)."""
        return bool(self._stop(keys=[self.hb_key], args=[token]) == 1)
