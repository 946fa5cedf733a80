"""Per-guest CPU average, for choosing and projecting moves with what a VM keeps using.

A guest's last sample can be a noise peak: moving it relieves less than it seemed and the
source drifts back over `cpu_max` (the big benchmark shed two extra VMs that way). The
triggers weigh guests by this average instead (`EngineInput.guest_cpu`).

Layout: `P ema:guests`, one JSON document `{"ts": sampled_at, "v": {vmid: average}}` with a
TTL. One Lua script per cycle updates every guest, whatever their number (one round trip):
a guest seen for the first time (or after `reset_after` seconds without samples) starts from
its sample; guests no longer running drop out, which bounds the document to the cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text, to_ms
from balancer.state.scripts import ScriptCall

# KEYS[1] the document. ARGV: alpha, ttl ms, sampled_at, reset_after, samples (JSON object).
_UPDATE = """
local alpha = tonumber(ARGV[1])
local ts = tonumber(ARGV[3])
local reset = tonumber(ARGV[4])
local cur = redis.call('GET', KEYS[1])
local old = {}
if cur then
  local d = cjson.decode(cur)
  if ts <= d.ts then
    return cur
  end
  if ts - d.ts <= reset then
    old = d.v
  end
end
local out = {}
local n = 0
for vmid, x in pairs(cjson.decode(ARGV[5])) do
  local prev = old[vmid]
  if prev then
    out[vmid] = alpha * x + (1 - alpha) * prev
  else
    out[vmid] = x
  end
  n = n + 1
end
local doc
if n == 0 then
  doc = '{"ts":' .. string.format('%.17g', ts) .. ',"v":{}}'
else
  doc = cjson.encode({ts = ts, v = out})
end
redis.call('SET', KEYS[1], doc, 'PX', ARGV[2])
return doc
"""


class GuestCpuEma(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.doc_key = self.key("ema", "guests")
        self._update = client.register_script(_UPDATE)

    def update(self, samples: Mapping[int, float], sampled_at: float, alpha: float,
               reset_after: float, ttl_seconds: float) -> Mapping[int, float]:
        """See `update_call`; one round trip."""
        return self.update_call(samples, sampled_at, alpha, reset_after, ttl_seconds).run()

    def update_call(self, samples: Mapping[int, float], sampled_at: float, alpha: float,
                    reset_after: float, ttl_seconds: float
                    ) -> ScriptCall[Mapping[int, float]]:
        """Fold this cycle's sample of every running guest in; every guest's average after.
        A sample not newer than the stored one is ignored (two evaluates, one snapshot)."""
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        values = samples.values()
        if values and not (min(values) >= 0.0 and math.isfinite(math.fsum(values))):
            raise ValueError("guest CPU samples must be finite and not negative")
        payload = orjson.dumps(samples if type(samples) is dict else dict(samples),
                               option=orjson.OPT_NON_STR_KEYS)
        return ScriptCall(self._update, [self.doc_key], [
            number(alpha, "alpha"), to_ms(ttl_seconds), number(sampled_at, "sampled_at"),
            number(reset_after, "reset_after"), payload], _values)

    def values(self) -> Mapping[int, float]:
        """The stored averages, read only (a hand-run `plan`)."""
        raw = self.client.get(self.doc_key)
        return GuestAverages({}) if raw is None else _values(raw)

    def clear(self) -> None:
        self.client.delete(self.doc_key)


class GuestAverages(Mapping[int, float]):
    """The averages by vmid, kept as the script's JSON has them (vmids as text). The engine
    reads the few guests on the nodes a trigger weighs, so the 10,000 keys of a big cluster
    are not converted every cycle. A value that is not a number reads as missing: the engine
    then uses that guest's last sample."""

    __slots__ = ("_by_text",)

    def __init__(self, by_text: Mapping[str, Any]) -> None:
        self._by_text = by_text

    def __getitem__(self, vmid: int) -> float:
        value = self._by_text[str(vmid)]
        if type(value) is float or type(value) is int:  # not a bool, not text
            return float(value)
        raise KeyError(vmid)

    def __iter__(self) -> Iterator[int]:
        return (int(vmid) for vmid in self._by_text)

    def __len__(self) -> int:
        return len(self._by_text)


def _values(raw: object) -> GuestAverages:
    try:
        doc = orjson.loads(raw if isinstance(raw, bytes | str) else text(raw))
        found = doc.get("v", {})
    except (ValueError, TypeError, AttributeError):
        found = {}  # unreadable: the engine falls back to the last samples
    return GuestAverages(found if isinstance(found, dict) else {})
