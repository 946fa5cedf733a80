"""`StateStore`: every piece of shared state behind one client and one key prefix.

Key layout (prefix `P`, default `pve-balancer:`); every key has a TTL:

    P lock:migration          owner token                      PX lock TTL
    P lock:migration:info     hash: acquired_at + attached     same TTL as the lock
    P lock:evaluate[:info]    same, for "one evaluate at a time"
    P heartbeat:poller        hash {token, at}                 PX beat TTL
    P ema:nodes               JSON node -> {ema, samples, last_ts}   PX ~10 x EMA window
    P marks                   hash kind:vmid -> entry          PX furthest entry expiry
    P history:decisions       list of JSON, capped             PX 30 days, refreshed on write
    P history:migrations      list of JSON, capped             PX 30 days, refreshed on write
    P cache:<name>            JSON                             PX given to set()
    P metrics:index           hash metric name -> kind         PX 30 days, refreshed on write
    P metrics:<name>          hash labels -> value (see metrics.py)  same
    P last-evaluate           JSON {at, action} of the newest evaluate   PX 30 days
    P cycle                   "a scheduled evaluate started"   PX half an interval
    P holds:proactive         hash node -> {since, seen}       PX a few EMA windows
    P ema:guests              JSON {ts, v: {vmid: cpu average}}     PX ~10 x EMA window
    P pause                   JSON {by, reason, since, until}  PX until the pause ends
    P drains                  hash node -> {by, reason, since}  PX 90 days, refreshed by evaluate
    P holds:stuck             like holds:proactive, for nodes saturated with no valid move
    P notify:outbox           list of notice JSON, capped      PX a day
    P notify:sent:<kind>:<subject>  throttle flag              PX notifications.throttle_seconds
    P notify:sending          the one sender's token           PX 90 s

Errors are never swallowed: any Redis trouble raises `redis.exceptions.RedisError` and the
caller skips the cycle. Reconnecting is left to redis-py (retries with backoff, health checks).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from balancer.state.cache import RedisJsonCache
from balancer.state.clock import RedisClock
from balancer.state.drains import Drains
from balancer.state.ema import CpuEmaStore
from balancer.state.guest_ema import GuestCpuEma
from balancer.state.heartbeat import Heartbeat
from balancer.state.history import History
from balancer.state.holds import STUCK, Holds
from balancer.state.keys import DEFAULT_PREFIX, Clock, key_count, keys_without_ttl
from balancer.state.liveness import Liveness
from balancer.state.lock import EVALUATE_LOCK, MIGRATION_LOCK, MigrationLock
from balancer.state.marks import GuestMarks
from balancer.state.metrics import MetricsStore
from balancer.state.outbox import Outbox
from balancer.state.pause import Pause

SOCKET_TIMEOUT = 5.0


def redis_py_url(url: str) -> str:
    """Celery's (kombu's) socket form `redis+socket:///path?virtual_host=N` as redis-py
    reads it, `unix:///path?db=N`; every other URL as it is."""
    parts = urlsplit(url)
    if parts.scheme != "redis+socket":
        return url
    query = urlencode([(("db" if k == "virtual_host" else k), v)
                       for k, v in parse_qsl(parts.query)])
    # Spelled out: urlunsplit drops the "//" of an empty host, and redis-py needs it.
    return f"unix://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
HEALTH_CHECK_INTERVAL = 30


class StateStore:
    """The facade the worker, beat and CLI use; parts are plain attributes."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        if not prefix:
            raise ValueError("a key prefix is required (e.g. 'pve-balancer:')")
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.lock = MigrationLock(client, prefix, MIGRATION_LOCK, clock)
        self.eval_lock = MigrationLock(client, prefix, EVALUATE_LOCK, clock)
        self.ema = CpuEmaStore(client, prefix, clock)
        self.marks = GuestMarks(client, prefix, clock)
        self.history = History(client, prefix, clock=clock)
        self.cache = RedisJsonCache(client, prefix, clock)
        self.heartbeat = Heartbeat(client, prefix, clock=clock)
        self.metrics = MetricsStore(client, prefix, clock)
        self.liveness = Liveness(client, prefix, clock)
        self.holds = Holds(client, prefix, clock)
        self.guest_ema = GuestCpuEma(client, prefix, clock)
        self.pause = Pause(client, prefix, clock)
        self.drains = Drains(client, prefix, clock)
        self.stuck = Holds(client, prefix, clock, name=STUCK)
        self.outbox = Outbox(client, prefix, clock)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, *,
                 socket_timeout: float = SOCKET_TIMEOUT,
                 clock: Clock | None = None) -> StateStore:
        """A store on a new client: 5 s socket timeouts, health checks, 3 retries with
        jittered backoff on connection errors and timeouts, `decode_responses=True`. Its
        clock is Redis's (`RedisClock`) unless one is given: hosts' clocks may disagree."""
        client = redis.Redis.from_url(
            redis_py_url(url),
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        )
        return cls(client, prefix, clock if clock is not None else RedisClock(client))

    def claim_cycle(self, seconds: float) -> bool:
        """True for the first caller in any `seconds` window (Redis's clock via PX)."""
        return bool(self.client.set(f"{self.prefix}cycle", "1", nx=True,
                                    px=max(1, int(seconds * 1000))))

    def ping(self) -> bool:
        """True when Redis answers; raises RedisError when it does not."""
        return bool(self.client.ping())

    def key_count(self) -> int:
        """Keys under the prefix (SCAN: tests and status only)."""
        return key_count(self.client, self.prefix)

    def keys_without_ttl(self) -> list[str]:
        """Keys under the prefix lacking a TTL; always empty unless something is wrong (SCAN)."""
        return keys_without_ttl(self.client, self.prefix)

    def close(self) -> None:
        self.client.close()
