"""The cluster-wide migration lock (and, with another name, the "one evaluate at a time" lock).

Layout (prefix `P`, lock name `N`, e.g. `migration` or `evaluate`):

* `P lock:N`       string, the owner token, `PX` = the lock TTL.
* `P lock:N:info`  hash of JSON values: `acquired_at` plus whatever was `attach`ed (vmid, source,
  target, upid, started_at, decision_id, ...). Always carries the same TTL as the lock; created,
  extended and deleted together with it by Lua scripts, so it can never outlive its lock.

The token is a secret of the owner: `holder()` (the status view) never returns it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import redis

from balancer.migrations import MigrationRef
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, number, text_dict, to_ms

if TYPE_CHECKING:
    from balancer.state.heartbeat import Heartbeat

MIGRATION_LOCK = "migration"
EVALUATE_LOCK = "evaluate"


_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'acquired_at', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

_ATTACH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[2], pttl)
end
return 1
"""

# The first caller per owner gets 1: `finishing` is set here and cleared by a take-over.
_CLAIM_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('HSETNX', KEYS[2], 'finishing', 'true')
"""

# KEYS: lock, info, heartbeat. ARGV: new token, lock ttl ms, heartbeat ttl ms, now (JSON).
_TAKE_OVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
if redis.call('HEXISTS', KEYS[2], 'upid') == 0 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HDEL', KEYS[2], 'finishing')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'token', ARGV[1], 'at', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""


class LockNotHeld(RuntimeError):
    """An operation needed the lock but the token no longer owns it (expired or taken over)."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock, as the status command may show it (no token): the migration it
    guards, as `attach`ed by evaluate, migrate and the follower."""

    acquired_at: float | None
    ttl_remaining: float
    vmid: int | None = None
    name: str | None = None
    source: str | None = None
    target: str | None = None
    upid: str | None = None
    ha_request: str | None = None
    reason: str | None = None
    requested_at: float | None = None
    started_at: float | None = None
    decision_id: str | None = None
    cpu_share_source: float = 0.0
    cpu_share_target: float = 0.0
    #: The one poll loop allowed to follow the migration (see `runtime.context.schedule_poll`).
    follower: str | None = None

    @property
    def migration(self) -> MigrationRef | None:
        """The migration the lock guards, or None while evaluate has not described it yet."""
        return None if self.vmid is None else MigrationRef.of(self)


#: What `attach` may store: the described fields; `acquired_at` and `finishing` are the lock's.
ATTACHABLE = frozenset(f.name for f in fields(LockInfo)) - {"acquired_at", "ttl_remaining"}


class MigrationLock(RedisPart):
    """A token lock on one key with an attached, equally-lived description of what it guards."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 name: str = MIGRATION_LOCK, clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.name = name
        self.lock_key = self.key("lock", name)
        self.info_key = self.key("lock", name, "info")
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._attach = client.register_script(_ATTACH)
        self._take_over = client.register_script(_TAKE_OVER)
        self._claim_finish = client.register_script(_CLAIM_FINISH)

    def acquire(self, ttl_seconds: float, now: float | None = None) -> str | None:
        """Take the lock for `ttl_seconds`; the owner token, or None when someone holds it."""
        token = uuid.uuid4().hex
        ok = self._acquire(keys=[self.lock_key, self.info_key],
                           args=[token, to_ms(ttl_seconds), number(self.now(now), "now")])
        return token if ok == 1 else None

    def release(self, token: str) -> bool:
        """Delete the lock if (and only if) `token` owns it; True when it did."""
        return bool(self._release(keys=[self.lock_key, self.info_key], args=[token]) == 1)

    def extend(self, token: str, ttl_seconds: float) -> bool:
        """Reset the TTL to `ttl_seconds` if `token` still owns the lock."""
        ok = self._extend(keys=[self.lock_key, self.info_key], args=[token, to_ms(ttl_seconds)])
        return bool(ok == 1)

    def owns(self, token: str) -> bool:
        """Whether `token` owns the lock right now (a snapshot: prefer `extend`/`attach`)."""
        current = self.client.get(self.lock_key)
        if isinstance(current, bytes):
            current = current.decode()
        return current == token

    def require(self, token: str, ttl_seconds: float | None = None) -> None:
        """Raise `LockNotHeld` unless `token` owns the lock; with a TTL, extend it as well."""
        held = self.extend(token, ttl_seconds) if ttl_seconds is not None else self.owns(token)
        if not held:
            raise LockNotHeld(f"{self.name} lock is not held by this owner")

    def attach(self, token: str, **migration_info: Any) -> bool:
        """Store facts about the migration (any `LockInfo` field: vmid, source, target, upid,
        started_at, decision_id, ...) alongside the lock, with the lock's TTL, only while
        `token` owns it."""
        bad = set(migration_info) - ATTACHABLE
        if bad:
            raise ValueError(f"cannot attach field(s) {', '.join(sorted(bad))}; LockInfo has "
                             f"{', '.join(sorted(ATTACHABLE))}")
        args: list[str] = [token]
        for name, value in migration_info.items():
            args += [name, json.dumps(value)]
        return bool(self._attach(keys=[self.lock_key, self.info_key], args=args) == 1)

    def claim_finish(self, token: str) -> bool:
        """The right to end what the lock guards (record the outcome, then `release`): True
        for exactly one caller per owner token, False for everyone else, including a second
        copy of the owner (a redelivered message of the same task chain) and anyone whose
        token no longer owns the lock. A `take_over` hands the right to the new token."""
        ok = self._claim_finish(keys=[self.lock_key, self.info_key], args=[token])
        return bool(ok == 1)

    def holder(self) -> LockInfo | None:
        """The current holder without its token, or None when the lock is free."""
        pipe = self.client.pipeline(transaction=True)
        pipe.pttl(self.lock_key)
        pipe.hgetall(self.info_key)
        pttl, raw = pipe.execute()
        if int(pttl) == -2:
            return None
        info: dict[str, Any] = {}
        for name, value in text_dict(raw).items():
            try:
                info[name] = json.loads(value)
            except ValueError:
                info[name] = value
        ttl = max(0.0, int(pttl) / 1000.0) if int(pttl) >= 0 else float("inf")
        return LockInfo(
            acquired_at=_float(info.get("acquired_at")),
            ttl_remaining=ttl,
            vmid=_int(info.get("vmid")),
            name=_str(info.get("name")),
            source=_str(info.get("source")),
            target=_str(info.get("target")),
            upid=_str(info.get("upid")),
            ha_request=_str(info.get("ha_request")),
            reason=_str(info.get("reason")),
            requested_at=_float(info.get("requested_at")),
            started_at=_float(info.get("started_at")),
            decision_id=_str(info.get("decision_id")),
            cpu_share_source=_float(info.get("cpu_share_source")) or 0.0,
            cpu_share_target=_float(info.get("cpu_share_target")) or 0.0,
            follower=_str(info.get("follower")),
        )

    def take_over(self, heartbeat: Heartbeat, ttl_seconds: float,
                  heartbeat_ttl_seconds: float, now: float | None = None) -> str | None:
        """Adopt a held lock whose follower died: atomically, if the lock is held, a UPID is
        attached and `heartbeat` is silent, give the lock a new token (returned) and TTL and
        beat `heartbeat` with it. The old owner's token stops working everywhere.

        Protocol for owners: beat the heartbeat *before* attaching the UPID, or a concurrent
        evaluate may take the migration over in between. None when there is nothing to adopt
        or the follower is alive."""
        token = uuid.uuid4().hex
        ok = self._take_over(
            keys=[self.lock_key, self.info_key, heartbeat.hb_key],
            args=[token, to_ms(ttl_seconds), to_ms(heartbeat_ttl_seconds),
                  number(self.now(now), "now")],
        )
        return token if ok == 1 else None

    def force_release(self) -> bool:
        """Delete the lock whoever holds it (operator command only); True if there was one."""
        return bool(self.client.delete(self.lock_key, self.info_key))

    @contextmanager
    def hold(self, ttl_seconds: float) -> Iterator[str | None]:
        """`with lock.hold(ttl) as token:` token is None when busy; released on exit if taken."""
        token = self.acquire(ttl_seconds)
        try:
            yield token
        finally:
            if token is not None:
                self.release(token)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
