"""Shared fixtures live in tests/support/; each module there is one kind of real service.

A test that takes one of those services (Redis, the simulator, Celery processes) is marked
`integration` here, whatever its module says, so `make test-fast` (`-m "not integration"`)
runs exactly the tests that need nothing but Python.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.pvesim_server",
    "tests.support.celery_worker",
    "tests.support.receiver",
]

#: Fixtures that start a real service (directly or through another fixture).
SERVICE_FIXTURES = frozenset({
    "redis_server", "redis_url", "redis_server_factory", "pvesim", "pvesim_factory",
    "deployment_factory", "hung_host", "store", "raw",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
