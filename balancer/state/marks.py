"""Per-guest marks that keep the engine away from a VM for a while: cooldown after a migration,
growing backoff after failures, and "unmigratable" (e.g. local resources) for an hour. Next
to them, not blocking anything: the nodes each VM was moved away from recently ("left"),
which the engine ranks last as targets for that VM.

Layout: `P marks`, ONE hash: `<kind>:<vmid>` -> JSON entry
{"kind", "vmid", "until", "expires", "since", "reason"[, "failures", "backoff"]}, times in epoch
seconds. `until` ends the block; `expires` ends the entry (for a backoff the failure count is
remembered past the block, by default a day). Expired entries are pruned by every read and
the hash TTL is pushed out to the furthest `expires`, so the key count is one and the field
count is bounded by the guests marked within a day. `blocked()` is one round trip.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text_dict, to_ms

COOLDOWN = "cooldown"
BACKOFF = "backoff"
UNMIGRATABLE = "unmigratable"
KINDS = (COOLDOWN, BACKOFF, UNMIGRATABLE)
#: Not a block: `{"kind": "left", "vmid", "nodes": {node: epoch it left}, "expires"}`.
LEFT = "left"

#: Longest reason/error text kept (PVE task errors can be long).
MAX_REASON = 500

# Push the hash TTL out to at least ARGV ms (never shorten it).
_EXTEND_TTL = """
local function extend_ttl(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end
"""

# KEYS[1] hash. ARGV: field, JSON entry, ttl ms.
_PUT = _EXTEND_TTL + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
extend_ttl(KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1] hash. ARGV: field, vmid, now, base s, max s, memory s, reason (JSON string).
_FAILURE = _EXTEND_TTL + """
local now = tonumber(ARGV[3])
local failures = 0
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' and type(d.expires) == 'number' and d.expires > now
      and type(d.failures) == 'number' then
    failures = d.failures
  end
end
failures = failures + 1
local backoff = math.min(tonumber(ARGV[4]) * 2 ^ (failures - 1), tonumber(ARGV[5]))
local untl = now + backoff
local expires = math.max(now + tonumber(ARGV[6]), untl)
local entry = string.format(
  '{"kind":"backoff","vmid":%s,"failures":%d,"backoff":%.17g,"until":%.17g,'
  .. '"expires":%.17g,"since":%.17g,"reason":%s}',
  ARGV[2], failures, backoff, untl, expires, now, ARGV[7])
redis.call('HSET', KEYS[1], ARGV[1], entry)
extend_ttl(KEYS[1], math.ceil((expires - now) * 1000))
return string.format('%.17g', backoff)
"""

# KEYS[1] hash. ARGV: field, vmid, node, now, window s. Adds the node to the nodes the VM
# left, keeping the others still inside the window (the entry ends a window after the newest).
_LEFT = _EXTEND_TTL + """
local now = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local nodes = {}
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' and type(d.nodes) == 'table' then
    for node, at in pairs(d.nodes) do
      if type(node) == 'string' and type(at) == 'number' and now - at <= window then
        nodes[node] = at
      end
    end
  end
end
nodes[ARGV[3]] = now
local entry = cjson.encode({kind = 'left', vmid = tonumber(ARGV[2]), nodes = nodes,
                            expires = now + window})
redis.call('HSET', KEYS[1], ARGV[1], entry)
extend_ttl(KEYS[1], math.ceil(window * 1000))
return 1
"""

# KEYS[1] hash. ARGV: now. Drops expired or unreadable entries, returns the rest flat.
_LIVE = """
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local ok, d = pcall(cjson.decode, all[i + 1])
  if ok and type(d) == 'table' and type(d.expires) == 'number' and d.expires > now then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class MarkEntry:
    """One active mark, for the status command. `until` is epoch seconds."""

    kind: str
    vmid: int
    until: float
    reason: str
    since: float | None = None
    failures: int = 0
    backoff: float = 0.0

    def describe(self) -> str:
        """Human reason, e.g. "backoff 120s after 2 failures: <error>"."""
        if self.kind == COOLDOWN:
            text = f"cooldown until {clock_time(self.until)}"
            return f"{text} ({self.reason})" if self.reason else text
        if self.kind == BACKOFF:
            plural = "failure" if self.failures == 1 else "failures"
            return f"backoff {self.backoff:g}s after {self.failures} {plural}: {self.reason}"
        return f"unmigratable: {self.reason}"


def clock_time(epoch: float) -> str:
    """HH:MM:SS in local time."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _vmid(vmid: int) -> str:
    if isinstance(vmid, bool) or not isinstance(vmid, int) or vmid <= 0:
        raise ValueError(f"vmid must be a positive integer, got {vmid!r}")
    return str(vmid)


def _reason(reason: object) -> str:
    return str(reason)[:MAX_REASON]


class GuestMarks(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.marks_key = self.key("marks")
        self._put = client.register_script(_PUT)
        self._failure = client.register_script(_FAILURE)
        self._live = client.register_script(_LIVE)
        self._left = client.register_script(_LEFT)

    def _store(self, kind: str, vmid: int, seconds: float, reason: str,
               now: float | None) -> None:
        t = self.now(now)
        entry = {"kind": kind, "vmid": int(_vmid(vmid)), "until": t + seconds,
                 "expires": t + seconds, "since": t, "reason": _reason(reason)}
        self._put(keys=[self.marks_key],
                  args=[f"{kind}:{vmid}", json.dumps(entry), to_ms(seconds)])

    def set_cooldown(self, vmid: int, seconds: float, reason: str = "",
                     now: float | None = None) -> None:
        """Keep the guest still for `seconds` (replaces an earlier cooldown); <= 0 clears it."""
        if seconds <= 0:
            self.client.hdel(self.marks_key, f"{COOLDOWN}:{_vmid(vmid)}")
            return
        self._store(COOLDOWN, vmid, seconds, reason, now)

    def mark_unmigratable(self, vmid: int, reason: str, ttl: float = 3600.0,
                          now: float | None = None) -> None:
        """Do not try the guest again for `ttl` seconds (PVE said it cannot be migrated)."""
        self._store(UNMIGRATABLE, vmid, ttl, reason, now)

    def record_failure(self, vmid: int, error: str, base_seconds: float = 60.0,
                       max_seconds: float = 3600.0, memory_seconds: float = 86400.0,
                       now: float | None = None) -> float:
        """Count a failed migration and block the guest for base x 2^(failures-1) seconds,
        capped at `max_seconds`; the count is forgotten `memory_seconds` after the last
        failure or on `record_success`. Atomic. Returns the backoff in seconds."""
        if base_seconds <= 0 or max_seconds <= 0 or memory_seconds <= 0:
            raise ValueError("base_seconds, max_seconds and memory_seconds must be positive")
        reply = self._failure(
            keys=[self.marks_key],
            args=[f"{BACKOFF}:{_vmid(vmid)}", str(vmid), number(self.now(now), "now"),
                  number(base_seconds, "base_seconds"), number(max_seconds, "max_seconds"),
                  number(memory_seconds, "memory_seconds"), json.dumps(_reason(error))],
        )
        return float(reply)

    def record_departure(self, vmid: int, node: str, window: float,
                         now: float | None = None) -> None:
        """The VM was moved away from `node`: remember it for `window` seconds (<= 0: not at
        all), with the other nodes it left inside the window. Atomic."""
        if window <= 0:
            return
        self._left(keys=[self.marks_key],
                   args=[f"{LEFT}:{_vmid(vmid)}", str(vmid), node,
                         number(self.now(now), "now"), number(window, "window")])

    def record_success(self, vmid: int) -> None:
        """A migration of the guest succeeded: forget its failures (and backoff)."""
        self.client.hdel(self.marks_key, f"{BACKOFF}:{_vmid(vmid)}")

    def clear(self, vmid: int, kind: str | None = None) -> int:
        """Drop the guest's marks (one kind or all); how many were removed."""
        kinds = KINDS if kind is None else (kind,)
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown mark kind {sorted(unknown)}; known: {', '.join(KINDS)}")
        return int(self.client.hdel(self.marks_key, *(f"{k}:{_vmid(vmid)}" for k in kinds)))

    def _entries(self, now: float | None) -> tuple[float, list[dict[str, Any]]]:
        t = self.now(now)
        raw = self._live(keys=[self.marks_key], args=[number(t, "now")])
        return t, [json.loads(v) for v in text_dict(raw).values()]

    def failures(self, vmid: int, now: float | None = None) -> int:
        """Failures remembered for the guest (0 when none or forgotten)."""
        _, entries = self._entries(now)
        for e in entries:
            if e["kind"] == BACKOFF and e["vmid"] == vmid:
                return int(e.get("failures", 0))
        return 0

    def listing(self, now: float | None = None) -> list[MarkEntry]:
        """Marks that block a guest right now, by vmid then kind (one round trip)."""
        return self._blocking(*self._entries(now))

    @staticmethod
    def _blocking(t: float, entries: list[dict[str, Any]]) -> list[MarkEntry]:
        out = [
            MarkEntry(kind=str(e["kind"]), vmid=int(e["vmid"]), until=float(e["until"]),
                      reason=str(e.get("reason", "")), since=e.get("since"),
                      failures=int(e.get("failures", 0)), backoff=float(e.get("backoff", 0.0)))
            for e in entries
            if e.get("kind") in KINDS and float(e["until"]) > t
        ]
        return sorted(out, key=lambda m: (m.vmid, KINDS.index(m.kind)))

    def blocked(self, now: float | None = None) -> dict[int, str]:
        """vmid -> why it must not be moved now, e.g. "cooldown until 14:05:09";
        several marks are joined with "; ". One round trip; prunes expired entries."""
        return self.current(now).blocked

    def current(self, now: float | None = None) -> MarksNow:
        """What a decision needs from the marks: the blocked guests and the nodes each guest
        left recently. One round trip; prunes expired entries."""
        t, entries = self._entries(now)
        blocked: dict[int, str] = {}
        for mark in self._blocking(t, entries):
            text = mark.describe()
            blocked[mark.vmid] = f"{blocked[mark.vmid]}; {text}" if mark.vmid in blocked else text
        left: dict[int, dict[str, float]] = {}
        for e in entries:
            nodes, vmid = e.get("nodes"), e.get("vmid")
            if e.get("kind") == LEFT and isinstance(nodes, dict) and type(vmid) is int:
                # A preference: an entry it cannot read is passed over, never a failed cycle.
                left[vmid] = {str(node): float(at) for node, at in nodes.items()
                              if type(at) in (int, float)}
        return MarksNow(blocked, left)


@dataclass(frozen=True)
class MarksNow:
    """The marks as one decision reads them."""

    #: vmid -> why it must not be moved now.
    blocked: dict[int, str]
    #: vmid -> node -> epoch seconds the guest was moved away from it.
    left: dict[int, dict[str, float]]
