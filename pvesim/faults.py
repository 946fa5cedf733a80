"""Injected trouble: random 5xx answers, slow responses and truncated JSON on chosen paths.

Decisions come from a seeded RNG, so a run with the same seed and request sequence fails the
same requests.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# What pveproxy/pvedaemon typically say for these codes.
DEFAULT_MESSAGES: dict[int, str] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    595: "No route to host",
    596: "Connection timed out",
}


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request: wait `delay` real seconds, then maybe fail with `status`."""

    delay: float = 0.0
    status: int | None = None
    message: str = ""
    #: Answer 200 with the body cut short (a proxy or a connection dropping mid-answer).
    truncate: bool = False


@dataclass
class Faults:
    """Fault settings; `paths` are regular expressions searched in the API path (no prefix)."""

    error_rate: float = 0.0
    latency_seconds: float = 0.0
    error_status: int = 500
    paths: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    message: str | None = None
    truncate_rate: float = 0.0
    _patterns: list[re.Pattern[str]] = field(default_factory=list)

    def configure(
        self,
        error_rate: float = 0.0,
        latency_seconds: float = 0.0,
        error_status: int = 500,
        paths: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        message: str | None = None,
        truncate_rate: float = 0.0,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be within 0..1")
        if not 0.0 <= truncate_rate <= 1.0:
            raise ValueError("truncate_rate must be within 0..1")
        self.truncate_rate = truncate_rate
        if latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if not 400 <= error_status <= 599:
            raise ValueError("error_status must be an HTTP error code")
        self.error_rate = error_rate
        self.latency_seconds = latency_seconds
        self.error_status = error_status
        self.paths = tuple(paths) if paths is not None else None
        self.methods = tuple(m.upper() for m in methods) if methods is not None else None
        self.message = message
        self._patterns = [re.compile(p) for p in self.paths or ()]

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        if self.paths is None:
            return True
        return any(p.search(path) for p in self._patterns)

    def decide(self, rng: random.Random, method: str, path: str) -> FaultDecision:
        if not (self.error_rate or self.latency_seconds or self.truncate_rate) or not \
                self.matches(method, path):
            return FaultDecision()
        status = None
        if self.error_rate and rng.random() < self.error_rate:
            status = self.error_status
        truncate = status is None and bool(self.truncate_rate) and rng.random() < \
            self.truncate_rate
        message = self.message or DEFAULT_MESSAGES.get(self.error_status, "simulated failure")
        return FaultDecision(self.latency_seconds, status, message, truncate)
