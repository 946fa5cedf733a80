"""Per-node exponential moving average of the CPU ratio, shared by all workers.

Layout: `P ema:cpu`, one hash: node name -> JSON {"ema": float, "samples": int, "last_ts": float}.
The whole hash gets `PX` = the TTL passed to `update` on every update, so a stopped balancer
leaves nothing behind; nodes that go offline (or leave the cluster) are removed on the next
update, which bounds the field count to the cluster size.

Every change is one Lua script, so two evaluates racing on the same sample cannot double-count:
a sample whose `sampled_at` is not newer than the node's `last_ts` is ignored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from balancer.model import CpuReading
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text, text_dict, to_ms

#: EMAs (and samples) are kept within 0..EMA_MAX; a node can briefly report a little over 1.0.
EMA_MAX = 1.5

_VALUE_FMT = '{"ema":%.17g,"samples":%d,"last_ts":%.17g}'

# KEYS[1] hash. ARGV: alpha, ttl ms, sampled_at, n_online, online..., node, value, node, value...
_UPDATE = """
local key = KEYS[1]
local alpha = tonumber(ARGV[1])
local ttl = ARGV[2]
local ts = tonumber(ARGV[3])
local n_online = tonumber(ARGV[4])
local fmt = '""" + _VALUE_FMT + """'
local online = {}
for i = 1, n_online do
  online[ARGV[4 + i]] = true
end
local stored = redis.call('HKEYS', key)
for _, node in ipairs(stored) do
  if not online[node] then
    redis.call('HDEL', key, node)
  end
end
for i = 5 + n_online, #ARGV, 2 do
  local node = ARGV[i]
  local x = tonumber(ARGV[i + 1])
  if online[node] then
    local cur = redis.call('HGET', key, node)
    if not cur then
      redis.call('HSET', key, node, string.format(fmt, x, 1, ts))
    else
      local d = cjson.decode(cur)
      if ts > d.last_ts then
        local ema = alpha * x + (1 - alpha) * d.ema
        redis.call('HSET', key, node, string.format(fmt, ema, d.samples + 1, ts))
      end
    end
  end
end
if redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, ttl)
end
return redis.call('HGETALL', key)
"""

# KEYS[1] hash. ARGV: node, delta, max, sampled_at or ''.
_SHIFT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  return false
end
local d = cjson.decode(cur)
local v = d.ema + tonumber(ARGV[2])
local hi = tonumber(ARGV[3])
if v < 0 then v = 0 end
if v > hi then v = hi end
local ts = d.last_ts
if ARGV[4] ~= '' then
  local s = tonumber(ARGV[4])
  if s > ts then ts = s end
end
local value = string.format('""" + _VALUE_FMT + """', v, d.samples, ts)
redis.call('HSET', KEYS[1], ARGV[1], value)
return value
"""


@dataclass(frozen=True, slots=True)
class EmaValue:
    """One node's stored EMA with the timestamp of its newest sample (status view)."""

    value: float
    samples: int
    last_ts: float

    def to_reading(self) -> CpuReading:
        """The engine's view of it."""
        return CpuReading(value=self.value, samples=self.samples)


def _parse(raw: str) -> EmaValue:
    data: dict[str, Any] = json.loads(raw)
    return EmaValue(value=float(data["ema"]), samples=int(data["samples"]),
                    last_ts=float(data["last_ts"]))


class CpuEmaStore(RedisPart):
    """The per-node CPU EMA. All methods raise `redis.exceptions.RedisError` on Redis trouble."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.ema_key = self.key("ema", "cpu")
        self._update = self.client.register_script(_UPDATE)
        self._shift = self.client.register_script(_SHIFT)

    def update(self, samples: Mapping[str, float], sampled_at: float, alpha: float,
               online: Collection[str], ttl_seconds: float = 600.0) -> dict[str, CpuReading]:
        """Fold one sample per node into the EMA, atomically for all nodes, and return every
        stored reading afterwards.

        First sample of a node seeds it (ema = value, samples = 1); a sample not newer than the
        node's last one is ignored; nodes not in `online` are forgotten (and re-seeded when they
        return). `ttl_seconds` (about 10 x the EMA window) bounds the life of the whole store.
        """
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        online_nodes = list(dict.fromkeys(online))
        args: list[str | int] = [number(alpha, "alpha"), to_ms(ttl_seconds),
                                 number(sampled_at, "sampled_at"), len(online_nodes)]
        args += online_nodes
        for node, value in samples.items():
            number(value, f"CPU sample of {node}")
            args += [node, repr(min(max(float(value), 0.0), EMA_MAX))]
        reply = self._update(keys=[self.ema_key], args=args)
        return {node: _parse(raw).to_reading() for node, raw in text_dict(reply).items()}

    def readings(self) -> dict[str, CpuReading]:
        """Every node's stored EMA for the engine (one round trip)."""
        return {node: value.to_reading() for node, value in self.entries().items()}

    def entries(self) -> dict[str, EmaValue]:
        """Every node's stored EMA including the newest sample's time (status)."""
        raw = self.client.hgetall(self.ema_key)
        return {node: _parse(value) for node, value in text_dict(raw).items()}

    def shift(self, node: str, delta: float,
              sampled_at: float | None = None) -> CpuReading | None:
        """Add `delta` to a node's EMA (clamped to 0..EMA_MAX), e.g. -share on the source and
        +share on the target once a migration completed. With `sampled_at`, samples taken at or
        before it (which do not show the move yet) are no longer applied. None if the node has
        no EMA (nothing to correct: it will be seeded from a measurement)."""
        if not math.isfinite(delta):
            raise ValueError(f"delta must be finite, got {delta!r}")
        stamp = "" if sampled_at is None else number(sampled_at, "sampled_at")
        reply = self._shift(keys=[self.ema_key], args=[node, repr(float(delta)), repr(EMA_MAX),
                                                        stamp])
        return None if reply is None else _parse(text(reply)).to_reading()

    def clear(self) -> None:
        self.client.delete(self.ema_key)
