"""Celery entry point: `celery -A tasks worker`, `celery -A tasks beat`, `celery -A tasks call
balancer.evaluate`, `celery -A tasks flower`."""

from tasks import balancing, signals
from tasks.app import app
from tasks.flower import secure_defaults

secure_defaults()

__all__ = ["app", "balancing", "signals"]
