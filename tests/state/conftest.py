"""Fixtures for the state-store tests: a store on the session's real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from balancer.state import StateStore

PREFIX = "test-pvb:"


@pytest.fixture
def store(redis_url: str) -> Iterator[StateStore]:
    s = StateStore.from_url(redis_url, prefix=PREFIX)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client (decode_responses=True) to look behind the store's back."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
