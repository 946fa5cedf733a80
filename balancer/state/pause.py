"""A pause: no new migration starts anywhere until it is lifted or runs out.

Operators stop the balancer for a maintenance or an incident without restarting anything,
and every worker honours it because it lives in the one shared Redis. Evaluate still reads
and records while paused (the averages stay current for the moment it resumes); only the
move is held back, and the one running finishes.

Layout: `P pause`, JSON `{"by", "reason", "since", "until"}` (the store's clock; `until` null
for "until resumed"), with `PX` at `until` when there is one, so an expired pause is simply
gone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms

#: A pause without an end still expires after this long: nobody stays paused by accident.
MAX_SECONDS = 30 * 86400.0


@dataclass(frozen=True)
class PauseState:
    by: str
    reason: str
    since: float
    until: float | None

    def describe(self) -> str:
        """`paused by alice@admin1 until 2026-12-06 14:00:00 UTC: backup window`."""
        until = "resumed" if self.until is None else _clock(self.until)
        why = f": {self.reason}" if self.reason else ""
        return f"paused by {self.by} until {until}{why}"

    def to_dict(self) -> dict[str, object]:
        return {"by": self.by, "reason": self.reason, "since": self.since, "until": self.until}


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Pause(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.pause_key = self.key("pause")

    def set(self, by: str, reason: str = "", seconds: float | None = None,
            now: float | None = None) -> PauseState:
        """Pause now, for `seconds` (None: until `clear`, at most 30 days)."""
        if seconds is not None and not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"a pause lasts 0..{MAX_SECONDS:g} seconds, got {seconds!r}")
        t = self.now(now)
        state = PauseState(by=by, reason=reason, since=t,
                           until=None if seconds is None else t + seconds)
        self.client.set(self.pause_key, json.dumps(state.to_dict()),
                        px=to_ms(seconds if seconds is not None else MAX_SECONDS))
        return state

    def clear(self) -> bool:
        """Lift the pause; True if there was one."""
        return bool(self.client.delete(self.pause_key))

    def current(self, now: float | None = None) -> PauseState | None:
        return self.parse(self.client.get(self.pause_key), self.now(now))

    def queue_current(self, pipe: redis.client.Pipeline) -> None:
        """`current` in the caller's pipeline; read the reply with `parse`."""
        pipe.get(self.pause_key)

    @staticmethod
    def parse(raw: object, now: float) -> PauseState | None:
        if raw is None:
            return None
        try:
            entry = json.loads(text(raw))
            state = PauseState(by=str(entry["by"]), reason=str(entry.get("reason") or ""),
                               since=float(entry["since"]),
                               until=None if entry.get("until") is None
                               else float(entry["until"]))
        except (ValueError, KeyError, TypeError):
            # Unreadable: someone meant to pause. Hold back moves until it is cleared.
            return PauseState(by="unknown", reason="unreadable pause entry", since=0.0,
                              until=None)
        if state.until is not None and state.until <= now:
            return None
        return state
