"""Shared fixtures live in tests/support/; each module there is one kind of real service."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.pvesim_server",
    "tests.support.celery_worker",
]
