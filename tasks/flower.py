"""Flower, as `celery -A tasks flower` starts it: safe by default.

* It binds 127.0.0.1 unless told otherwise (`--address`, `FLOWER_ADDRESS`): Flower's own
  default is every interface, with no login.
* With basic auth or OAuth configured, `/metrics` asks for the same login as every other page
  (Flower 2.2 serves it to anyone; see flower/views/monitor.py `Metrics`). `/healthcheck`
  stays open: it says "OK" and nothing else. Give Prometheus the credentials to scrape it.

Applied on import of `tasks`, before Flower reads its options; harmless in workers and beat.
"""

from __future__ import annotations

import os
from typing import Any

#: Where Flower listens when nobody said otherwise.
DEFAULT_ADDRESS = "127.0.0.1"


def secure_defaults() -> None:
    os.environ.setdefault("FLOWER_ADDRESS", DEFAULT_ADDRESS)
    try:
        from flower.views import monitor
        from tornado import web
    except ImportError:  # Flower is optional at run time
        return
    metrics: Any = monitor.Metrics
    if getattr(metrics.get, "_pve_balancer_guarded", False):
        return
    unguarded = metrics.get

    async def get(self: Any) -> None:
        options = self.application.options
        guarded = options.basic_auth or options.auth
        pending = web.authenticated(unguarded)(self) if guarded else unguarded(self)
        if pending is not None:
            await pending

    get._pve_balancer_guarded = True  # type: ignore[attr-defined]
    metrics.get = get
