"""Process-level hooks: our structured logging instead of Celery's, the heap setting every
worker process runs with, and a start-up summary."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from balancer.heap import keep_large_buffers_off_the_heap
from balancer.logs import configure_logging, event_fields
from tasks.app import current_config

log = logging.getLogger("balancer.worker")


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    config = current_config()
    configure_logging(config.logging.format, config.logging.level)


@signals.worker_init.connect
@signals.worker_process_init.connect
def _bound_heap_growth(**_: Any) -> None:
    """In the main process (the solo pool, and the prefork children inherit it) and again in
    each pool process: see `balancer.heap`."""
    keep_large_buffers_off_the_heap()


@signals.worker_ready.connect
def _announce(**_: Any) -> None:
    config = current_config()
    b = config.balancing
    log.info("worker ready", extra=event_fields(
        hosts=",".join(config.proxmox.hosts), redis=config.redis.redacted_url,
        cpu_max=b.cpu_max, memory_max=b.memory_max, interval=b.interval_seconds,
        dry_run=b.dry_run, verify_ssl=config.proxmox.verify_ssl))
    if not config.proxmox.verify_ssl:
        log.warning("TLS verification of the PVE API is off (proxmox.verify_ssl: false)")
