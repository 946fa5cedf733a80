"""Shared plumbing for the Redis state store: key naming, unit conversion, reply decoding.

Every part of the store is a `RedisPart`: a `redis.Redis` client plus the key prefix. Clients
may be created with or without `decode_responses`; replies are normalised to `str` here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

DEFAULT_PREFIX = "pve-balancer:"

#: A wall clock in epoch seconds; injectable so tests can be exact.
Clock = Callable[[], float]


class RedisPart:
    """Base for one concept of the store: owns a client, a prefix and a clock."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock

    def key(self, *parts: str) -> str:
        """`prefix` + the parts joined with `:`."""
        return self.prefix + ":".join(parts)

    def now(self, now: float | None) -> float:
        return self.clock() if now is None else float(now)


def to_ms(seconds: float) -> int:
    """A TTL in whole milliseconds for PX/PEXPIRE; at least 1 (Redis rejects 0)."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"TTL must be a positive number of seconds, got {seconds!r}")
    return max(1, math.ceil(seconds * 1000))


def text(value: Any) -> str:
    """A reply as `str`, whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def text_dict(value: Any) -> dict[str, str]:
    """A HGETALL reply (dict) or a flat Lua [k, v, k, v] array as a `str` dict."""
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    items = list(value or [])
    return {text(items[i]): text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def number(value: float, what: str) -> str:
    """A finite float formatted so that Redis Lua, JSON and Python all read it back exactly."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return repr(float(value))


def escape_glob(prefix: str) -> str:
    """Escape SCAN MATCH glob characters so the prefix matches literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)


def iter_keys(client: redis.Redis, prefix: str) -> Iterator[str]:
    """All keys under `prefix`, via SCAN (tests and status only: never per cycle)."""
    for key in client.scan_iter(match=escape_glob(prefix) + "*", count=500):
        yield text(key)


def key_count(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> int:
    """How many keys exist under `prefix` (SCAN; for tests and the status command)."""
    return sum(1 for _ in iter_keys(client, prefix))


def keys_without_ttl(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Keys under `prefix` that would live forever (TTL -1); should be empty (SCAN)."""
    return sorted(k for k in iter_keys(client, prefix) if client.ttl(k) == -1)
