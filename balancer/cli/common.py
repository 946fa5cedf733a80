"""What every command shares: exit codes, loading the config, opening the state store."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from collections.abc import Callable

import redis

from balancer.config import Config, load_config
from balancer.state import StateStore

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

Command = Callable[[argparse.Namespace], int]


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def open_store(config: Config) -> StateStore | None:
    """The shared state if Redis answers; `plan` works without it, `status` does not."""
    try:
        store = StateStore.from_url(config.redis.url.reveal(), socket_timeout=2.0)
        store.ping()
        return store
    except redis.exceptions.RedisError:
        return None


def store_or_report(config: Config) -> StateStore | None:
    """The shared state for commands that need it; None after saying Redis is away."""
    store = open_store(config)
    if store is None:
        print(f"Redis at {config.redis.redacted_url} is not reachable", file=sys.stderr)
    return store


def who() -> str:
    """`user@host` of whoever runs the command: shown with a pause or a drain."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
