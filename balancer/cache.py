"""A small JSON cache interface so the PVE client can share slow-changing reads between workers.

Production uses the Redis implementation in balancer.state; tests and `plan` on a snapshot
file can use `MemoryCache`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class JsonCache(Protocol):
    def get(self, key: str) -> Any | None:
        """The cached JSON value, or None when absent or expired."""

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        """Store a JSON-serialisable value for `ttl_seconds`."""

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The cached values of `keys` that are present, in one round trip."""


class MemoryCache:
    """Process-local cache with expiry; enough for one-shot CLI commands and tests."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        self._items[key] = (time.monotonic() + ttl_seconds, value)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found = {key: self.get(key) for key in keys}
        return {key: value for key, value in found.items() if value is not None}
