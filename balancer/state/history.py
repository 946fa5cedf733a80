"""Recent decisions and migration events, newest first, for the status command.

Layout: `P history:decisions` and `P history:migrations`, capped lists of JSON objects
(LPUSH + LTRIM in one MULTI), each with a long TTL refreshed on write so an abandoned prefix
eventually disappears. `P history:ended:<key>` marks a migration whose end is recorded (key:
its decision id, or `upid:<UPID>` for one read back from PVE): a migration ends once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import redis

from balancer.migrations import Migration, MigrationEvent, rebuild
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms

DEFAULT_MAX_ENTRIES = 200
DEFAULT_TTL_SECONDS = 30 * 86400.0


class History(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.ttl_ms = to_ms(ttl_seconds)
        self.decisions_key = self.key("history", "decisions")
        self.migrations_key = self.key("history", "migrations")

    def _push(self, key: str, entry: Mapping[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=True)
        self._queue_push(pipe, key, entry)
        pipe.execute()

    def _queue_push(self, pipe: redis.client.Pipeline, key: str,
                    entry: Mapping[str, Any]) -> None:
        pipe.lpush(key, json.dumps(dict(entry), default=str))
        pipe.ltrim(key, 0, self.max_entries - 1)
        pipe.pexpire(key, self.ttl_ms)

    def _read(self, key: str, limit: int) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        return _entries(self.client.lrange(key, 0, min(limit, self.max_entries) - 1))

    # Reads queued in a caller's pipeline (a cycle loads its records in one round trip);
    # parse the reply with the matching `parse_*`.

    def queue_events(self, pipe: redis.client.Pipeline, limit: int) -> None:
        pipe.lrange(self.migrations_key, 0, max(0, min(limit, self.max_entries) - 1))

    @staticmethod
    def parse_events(reply: Any) -> list[MigrationEvent]:
        found = (MigrationEvent.from_json(raw) for raw in _entries(reply))
        return [event for event in found if event is not None]

    def queue_last_decision(self, pipe: redis.client.Pipeline) -> None:
        pipe.lrange(self.decisions_key, 0, 0)

    @staticmethod
    def parse_last_decision(reply: Any) -> dict[str, Any] | None:
        found = _entries(reply)
        return found[0] if found else None

    def record_decision(self, decision: Mapping[str, Any]) -> None:
        """Remember one evaluate outcome (JSON-able mapping; non-JSON values become str)."""
        self._push(self.decisions_key, decision)

    def queue_decision(self, pipe: redis.client.Pipeline, decision: Mapping[str, Any]) -> None:
        """`record_decision` as commands in the caller's pipeline."""
        self._queue_push(pipe, self.decisions_key, decision)

    def record_migration_event(self, event: MigrationEvent) -> None:
        """Remember one migration event (requested, started, succeeded, ...)."""
        self._push(self.migrations_key, event.to_json())

    def claim_end(self, key: str) -> bool:
        """The right to record the end of migration `key`: True once, False ever after (for
        the history's lifetime), whoever asks: a stale follower, a reconciliation, a replay."""
        return bool(self.client.set(self.key("history", "ended", key), "1", nx=True,
                                    px=self.ttl_ms))

    def ended(self, key: str) -> bool:
        """Whether the end of migration `key` is recorded: it may not be re-opened."""
        return bool(self.client.exists(self.key("history", "ended", key)))

    def decisions(self, limit: int = DEFAULT_MAX_ENTRIES) -> list[dict[str, Any]]:
        """Newest first."""
        return self._read(self.decisions_key, limit)

    def events(self, limit: int = DEFAULT_MAX_ENTRIES) -> list[MigrationEvent]:
        """Migration events, newest first (an unreadable entry is skipped)."""
        return self.parse_events(self._read_raw(self.migrations_key, limit))

    def _read_raw(self, key: str, limit: int) -> list[Any]:
        if limit <= 0:
            return []
        return list(self.client.lrange(key, 0, min(limit, self.max_entries) - 1))

    def migrations(self, limit: int = DEFAULT_MAX_ENTRIES) -> list[Migration]:
        """The migrations the newest `limit` events tell of, newest first."""
        return rebuild(self.events(limit))

    def last_decision(self) -> dict[str, Any] | None:
        found = self._read(self.decisions_key, 1)
        return found[0] if found else None

    def clear(self) -> None:
        self.client.delete(self.decisions_key, self.migrations_key)


def _entries(raws: Any) -> list[dict[str, Any]]:
    """The JSON objects of a list reply, newest first; anything else is skipped."""
    out: list[dict[str, Any]] = []
    for raw in raws or ():
        try:
            value = json.loads(text(raw))
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
