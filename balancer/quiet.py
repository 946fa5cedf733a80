"""Quiet hours: windows (nightly backups, a change freeze) in which no migration starts
except a drain.

Each window names its own IANA time zone: a cluster's nodes, its operators and the worker's
container rarely agree on one, and a window that silently shifts by an hour at a DST change
or in a UTC container is worse than none. A window that ends before it starts runs past
midnight (22:00-02:00), and its days are the days it starts on.

    quiet_hours:
      - name: nightly backups
        days: mon-fri            # or [mon, wed, fri]; default every day
        start: "01:00"
        end: "05:00"
        timezone: Europe/Berlin
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_FIELDS = frozenset({"name", "days", "start", "end", "timezone"})


class QuietHoursError(ValueError):
    """A window that cannot be read; the message names the entry and the field."""


@dataclass(frozen=True)
class QuietWindow:
    name: str
    days: frozenset[int]  # Monday is 0, as `datetime.weekday()`
    start: time
    end: time
    timezone: str

    def contains(self, at: float) -> bool:
        """Whether the epoch second `at` falls inside this window, in its own zone."""
        local = datetime.fromtimestamp(at, ZoneInfo(self.timezone))
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # Past midnight: the early part belongs to the day before.
        if now >= self.start:
            return local.weekday() in self.days
        yesterday = (local - timedelta(days=1)).weekday()
        return now < self.end and yesterday in self.days

    def describe(self) -> str:
        """`quiet hours "nightly backups" (mon-fri 01:00-05:00 Europe/Berlin)`."""
        return (f'quiet hours "{self.name}" ({_days_text(self.days)} '
                f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "days": _days_text(self.days),
                "start": f"{self.start:%H:%M}", "end": f"{self.end:%H:%M}",
                "timezone": self.timezone}


def open_window(windows: tuple[QuietWindow, ...], at: float) -> QuietWindow | None:
    """The first window open at `at`, if any."""
    return next((w for w in windows if w.contains(at)), None)


def parse_windows(key: str, value: Any) -> tuple[QuietWindow, ...]:
    """A list of window mappings -> windows; errors name `key[i] (name).field`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QuietHoursError(f"{key}: expected a list of windows "
                              "({name, days, start, end, timezone})")
    return tuple(_window(f"{key}[{i}]", entry) for i, entry in enumerate(value))


def _window(where: str, entry: Any) -> QuietWindow:
    if not isinstance(entry, dict):
        raise QuietHoursError(f"{where}: expected a mapping with start, end and timezone")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise QuietHoursError(f"{where}.name: expected a non-empty string")
    label = f'{where} ("{name}")' if name else where
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise QuietHoursError(f"{label}: unknown field {unknown[0]!r}; "
                              f"allowed: {', '.join(sorted(_FIELDS))}")
    for required in ("start", "end", "timezone"):
        if required not in entry:
            raise QuietHoursError(f"{label}.{required}: required")
    start, end = (_clock(f"{label}.{f}", entry[f]) for f in ("start", "end"))
    if start == end:
        raise QuietHoursError(f"{label}: start and end are both {start:%H:%M}; a window "
                              "needs a length (00:00-00:00 is not 'all day': use 00:00-23:59)")
    return QuietWindow(name=name or where, days=_days(f"{label}.days", entry.get("days")),
                       start=start, end=end,
                       timezone=_zone(f"{label}.timezone", entry["timezone"]))


def _clock(where: str, value: Any) -> time:
    # YAML 1.1 reads an unquoted 01:00 as the sexagesimal number 60: say so.
    if isinstance(value, int) and not isinstance(value, bool):
        raise QuietHoursError(f"{where}: got the number {value}; quote the time, e.g. \"01:00\"")
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise QuietHoursError(f"{where}: expected HH:MM (00:00..23:59), got {value!r}")
    return time(int(match[1]), int(match[2]))


def _days(where: str, value: Any) -> frozenset[int]:
    if value is None:
        return frozenset(range(7))
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list) or not parts:
        raise QuietHoursError(f"{where}: expected days such as mon-fri or [sat, sun]")
    found: set[int] = set()
    for part in parts:
        if not isinstance(part, str):
            raise QuietHoursError(f"{where}: {part!r} is not a day; use mon..sun")
        first, _, last = part.strip().lower().partition("-")
        for day in (first, last) if last else (first,):
            if day not in DAYS:
                raise QuietHoursError(f"{where}: {day!r} is not a day; use "
                                      f"{', '.join(DAYS)} or a range like mon-fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(found)


def _zone(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise QuietHoursError(f"{where}: expected an IANA time zone such as Europe/Berlin "
                              "or UTC")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise QuietHoursError(f"{where}: {value!r} is not a known time zone; use an IANA "
                              "name such as Europe/Berlin, America/New_York or UTC") from None
    return value


def _days_text(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)
