#!/usr/bin/env python3
"""Container health check for the pve-balancer image: cheap, meaningful, never prints a secret.

    pve-balancer-healthcheck            the config at $BALANCER_CONFIG is valid, the Redis it
                                        names answers PING, and an evaluate ran within the
                                        last 3 intervals (once one ever ran): worker and beat
    pve-balancer-healthcheck --url URL  URL answers HTTP 200 (the exporter's /metrics, Flower's
                                        /healthcheck); a Redis outage is the exporter's to report

Exit 0 when healthy, 1 when not, with one line saying why (Docker keeps it in `inspect`).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT = 3.0
#: Unhealthy after this many intervals without an evaluate.
STALE_INTERVALS = 3


def check_redis() -> str:
    import redis

    from balancer.config import ConfigError, load_config
    from balancer.state.clock import RedisClock
    from balancer.state.liveness import Liveness
    from balancer.state.store import redis_py_url

    try:
        config = load_config()
    except ConfigError as exc:
        raise SystemExit(f"unhealthy: config error: {exc}") from None
    client = redis.Redis.from_url(redis_py_url(config.redis.url.reveal()), socket_timeout=TIMEOUT,
                                  socket_connect_timeout=TIMEOUT)
    try:
        client.ping()
        last = Liveness(client, clock=RedisClock(client)).last()
    except redis.exceptions.RedisError as exc:
        # The exception text names host and port only; the URL (and password) is redacted.
        raise SystemExit(f"unhealthy: redis {config.redis.redacted_url}: "
                         f"{type(exc).__name__}") from None
    finally:
        client.close()
    interval = config.balancing.interval_seconds
    if last is not None and last.age_seconds > STALE_INTERVALS * interval:
        raise SystemExit(f"unhealthy: no evaluate for {last.age_seconds:.0f}s (more than "
                         f"{STALE_INTERVALS} intervals of {interval:g}s); last at {last.at_iso}")
    since = "no evaluate yet" if last is None else f"last evaluate {last.age_seconds:.1f}s ago"
    return f"redis {config.redis.redacted_url} answers; {since}"


def check_url(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
            status = int(reply.status)
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"unhealthy: {url}: {exc}") from None
    if status != 200:
        raise SystemExit(f"unhealthy: {url}: HTTP {status}")
    return f"{url} answers"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pve-balancer-healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="check that this URL answers HTTP 200 instead")
    args = parser.parse_args(argv)
    print("healthy: " + (check_url(args.url) if args.url else check_redis()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
