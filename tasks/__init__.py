"""Celery entry point: `celery -A tasks worker`, `celery -A tasks beat`, `celery -A tasks call
balancer.evaluate`, `celery -A tasks flower`."""

from tasks import balancing, signals
from tasks.app import app

__all__ = ["app", "balancing", "signals"]
