"""The Redis state store: the one coordination point between workers (see `store.py`)."""

from balancer.state.cache import RedisJsonCache
from balancer.state.ema import EMA_MAX, CpuEmaStore, EmaValue
from balancer.state.heartbeat import Heartbeat, HeartbeatInfo
from balancer.state.history import History
from balancer.state.keys import DEFAULT_PREFIX, key_count, keys_without_ttl
from balancer.state.lock import LockInfo, LockNotHeld, MigrationLock
from balancer.state.marks import GuestMarks, MarkEntry
from balancer.state.metrics import HistogramValue, MetricsSnapshot, MetricsStore
from balancer.state.store import StateStore

__all__ = [
    "DEFAULT_PREFIX",
    "EMA_MAX",
    "CpuEmaStore",
    "EmaValue",
    "GuestMarks",
    "Heartbeat",
    "HeartbeatInfo",
    "HistogramValue",
    "History",
    "LockInfo",
    "LockNotHeld",
    "MarkEntry",
    "MetricsSnapshot",
    "MetricsStore",
    "MigrationLock",
    "RedisJsonCache",
    "StateStore",
    "key_count",
    "keys_without_ttl",
]
