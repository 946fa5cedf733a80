"""`pve-balancer pause` and `resume`: hold back every new migration, cluster-wide."""

from __future__ import annotations

import argparse
import re
import sys

from balancer import notify
from balancer.cli.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    load,
    store_or_report,
    who,
)

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `1h30m`, `1d` -> seconds; ValueError names the forms."""
    spec = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", spec):
        seconds = float(spec)
    elif spec and re.fullmatch(r"(?:\d+(?:\.\d+)?[smhd])+", spec):
        seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(spec))
    else:
        raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 30m, 2h, 1h30m or 1d")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a pause must last more than 0 seconds")
    return seconds


def cmd_pause(args: argparse.Namespace) -> int:
    """Hold back every new migration on every worker (the one running finishes) until
    `resume`, or for --for DURATION. Evaluate keeps reading and recording, and says
    "skipped: paused by ... until ..."."""
    try:
        seconds = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        print(f"pause: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    state = store.pause.set(by=who(), reason=args.reason or "", seconds=seconds)
    print(state.describe())
    if config.notifications.urls:
        store.outbox.post([notify.paused(state.describe())], 0)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    """Lift a pause: the next evaluate may start a migration again."""
    config = load(args)
    store = store_or_report(config)
    if store is None:
        return EXIT_UNAVAILABLE
    if store.pause.clear():
        print("resumed")
        if config.notifications.urls:
            store.outbox.post([notify.resumed(who())], 0)
    else:
        print("was not paused")
    return EXIT_OK
