"""Per-node exponential moving average of the CPU ratio, shared by all workers.

Layout: `P ema:nodes`, one JSON document: node name -> {"ema": float, "samples": int,
"last_ts": float, "relieved": 0|1}, with `PX` = the TTL passed to `update`, so a stopped
balancer leaves nothing behind; nodes that go offline (or leave the cluster) are dropped on
the next update, which bounds the document to the cluster size. `relieved` is the CPU
hysteresis: set by the shift of a move that left the source under cpu_max, cleared by the
update whose EMA leaves the band cpu_max -/+ cpu_hysteresis.

Every change is one Lua script on the one key: two evaluates racing on the same sample cannot
double-count (a sample whose `sampled_at` is not newer than the node's `last_ts` is ignored),
and an update costs the same two commands inside Redis whatever the node count.
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
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text, to_ms
from balancer.state.scripts import ScriptCall

#: EMAs (and samples) are kept within 0..EMA_MAX; a node can briefly report a little over 1.0.
EMA_MAX = 1.5

_VALUE_FMT = '{"ema":%.17g,"samples":%d,"last_ts":%.17g,"relieved":%d}'

#: Lua helpers: cjson.encode keeps 14 digits only, so values are written with %.17g.
_ENCODE = """
local function encode(doc)
  local parts = {}
  for node, v in pairs(doc) do
    parts[#parts + 1] = cjson.encode(node) .. ':' ..
      string.format('""" + _VALUE_FMT + """', v.ema, v.samples, v.last_ts, v.relieved or 0)
  end
  return '{' .. table.concat(parts, ',') .. '}', #parts
end
local function load(key)
  local cur = redis.call('GET', key)
  if cur then
    return cjson.decode(cur)
  end
  return {}
end
"""

# KEYS[1] doc. ARGV: alpha, ttl ms, sampled_at, band low or '', band high or '', n_online,
# online..., node, value, node, value...
_UPDATE = _ENCODE + """
local key = KEYS[1]
local alpha = tonumber(ARGV[1])
local ts = tonumber(ARGV[3])
local low = tonumber(ARGV[4])
local high = tonumber(ARGV[5])
local n_online = tonumber(ARGV[6])
local online = {}
for i = 1, n_online do
  online[ARGV[6 + i]] = true
end
local doc = {}
for node, v in pairs(load(key)) do
  if online[node] then
    doc[node] = v
  end
end
for i = 7 + n_online, #ARGV, 2 do
  local node = ARGV[i]
  local x = tonumber(ARGV[i + 1])
  if online[node] then
    local cur = doc[node]
    if not cur then
      doc[node] = {ema = x, samples = 1, last_ts = ts, relieved = 0}
    elseif ts > cur.last_ts then
      local ema = alpha * x + (1 - alpha) * cur.ema
      local relieved = cur.relieved or 0
      if relieved == 1 and low and (ema < low or ema > high) then
        relieved = 0
      end
      doc[node] = {ema = ema, samples = cur.samples + 1, last_ts = ts, relieved = relieved}
    end
  end
end
local text, n = encode(doc)
if n == 0 then
  redis.call('DEL', key)
else
  redis.call('SET', key, text, 'PX', ARGV[2])
end
return text
"""

# KEYS[1] doc. ARGV: node, delta, max, sampled_at or '', relieved-below or ''.
_SHIFT = _ENCODE + """
local doc = load(KEYS[1])
local d = doc[ARGV[1]]
if not d then
  return false
end
local v = d.ema + tonumber(ARGV[2])
local hi = tonumber(ARGV[3])
if v < 0 then v = 0 end
if v > hi then v = hi end
local ts = d.last_ts
if ARGV[4] ~= '' then
  local s = tonumber(ARGV[4])
  if s > ts then ts = s end
end
local relieved = d.relieved or 0
if ARGV[5] ~= '' and v <= tonumber(ARGV[5]) then
  relieved = 1
end
doc[ARGV[1]] = {ema = v, samples = d.samples, last_ts = ts, relieved = relieved}
redis.call('SET', KEYS[1], (encode(doc)), 'KEEPTTL')
return string.format('""" + _VALUE_FMT + """', v, d.samples, ts, relieved)
"""


@dataclass(frozen=True, slots=True)
class EmaValue:
    """One node's stored EMA with the timestamp of its newest sample (status view), and
    whether a move brought it under cpu_max with the EMA inside the hysteresis band since."""

    value: float
    samples: int
    last_ts: float
    relieved: bool = False

    def to_reading(self) -> CpuReading:
        """The engine's view of it."""
        return CpuReading(value=self.value, samples=self.samples, relieved=self.relieved)


def _parse(raw: str) -> EmaValue:
    return _value(json.loads(raw))


def _value(data: dict[str, Any]) -> EmaValue:
    return EmaValue(value=float(data["ema"]), samples=int(data["samples"]),
                    last_ts=float(data["last_ts"]), relieved=data.get("relieved") == 1)


def _readings(reply: Any) -> dict[str, CpuReading]:
    return {node: value.to_reading() for node, value in _document(reply).items()}


def _document(raw: Any) -> dict[str, EmaValue]:
    if raw is None:
        return {}
    doc: dict[str, dict[str, Any]] = json.loads(text(raw))
    return {node: _value(entry) for node, entry in doc.items()}


class CpuEmaStore(RedisPart):
    """The per-node CPU EMA. All methods raise `redis.exceptions.RedisError` on Redis trouble."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.ema_key = self.key("ema", "nodes")
        self._update = self.client.register_script(_UPDATE)
        self._shift = self.client.register_script(_SHIFT)

    def update(self, samples: Mapping[str, float], sampled_at: float, alpha: float,
               online: Collection[str], ttl_seconds: float = 600.0,
               band: tuple[float, float] | None = None) -> dict[str, CpuReading]:
        """See `update_call`; one round trip."""
        return self.update_call(samples, sampled_at, alpha, online, ttl_seconds, band).run()

    def update_call(self, samples: Mapping[str, float], sampled_at: float, alpha: float,
                    online: Collection[str], ttl_seconds: float = 600.0,
                    band: tuple[float, float] | None = None
                    ) -> ScriptCall[dict[str, CpuReading]]:
        """Fold one sample per node into the EMA, atomically for all nodes, and return every
        stored reading afterwards.

        First sample of a node seeds it (ema = value, samples = 1); a sample not newer than the
        node's last one is ignored; nodes not in `online` are forgotten (and re-seeded when they
        return). `ttl_seconds` (about 10 x the EMA window) bounds the life of the whole store.
        `band` is the CPU hysteresis band (cpu_max -/+ cpu_hysteresis): a relieved node whose
        EMA leaves it is relieved no more.
        """
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        online_nodes = list(dict.fromkeys(online))
        low, high = ("", "") if band is None else (number(band[0], "band low"),
                                                   number(band[1], "band high"))
        args: list[str | int] = [number(alpha, "alpha"), to_ms(ttl_seconds),
                                 number(sampled_at, "sampled_at"), low, high,
                                 len(online_nodes)]
        args += online_nodes
        for node, value in samples.items():
            number(value, f"CPU sample of {node}")
            args += [node, repr(min(max(float(value), 0.0), EMA_MAX))]
        return ScriptCall(self._update, [self.ema_key], args, _readings)

    def readings(self) -> dict[str, CpuReading]:
        """Every node's stored EMA for the engine (one round trip)."""
        return {node: value.to_reading() for node, value in self.entries().items()}

    def entries(self) -> dict[str, EmaValue]:
        """Every node's stored EMA including the newest sample's time (status)."""
        return _document(self.client.get(self.ema_key))

    def shift(self, node: str, delta: float, sampled_at: float | None = None,
              relieved_below: float | None = None) -> CpuReading | None:
        """Add `delta` to a node's EMA (clamped to 0..EMA_MAX), e.g. -share on the source and
        +share on the target once a migration completed. With `sampled_at`, samples taken at or
        before it (which do not show the move yet) are no longer applied. With
        `relieved_below` (cpu_max), a node the shift leaves at or under it is marked relieved
        (the CPU hysteresis). None if the node has no EMA (nothing to correct: it will be
        seeded from a measurement)."""
        if not math.isfinite(delta):
            raise ValueError(f"delta must be finite, got {delta!r}")
        stamp = "" if sampled_at is None else number(sampled_at, "sampled_at")
        below = "" if relieved_below is None else number(relieved_below, "relieved_below")
        reply = self._shift(keys=[self.ema_key], args=[node, repr(float(delta)), repr(EMA_MAX),
                                                        stamp, below])
        return None if reply is None else _parse(text(reply)).to_reading()

    def clear(self) -> None:
        self.client.delete(self.ema_key)
