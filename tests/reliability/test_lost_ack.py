"""A task that finishes after the broker connection was re-established acks its message through
the dropped channel; kombu raised an AttributeError there that killed the worker (found by the
chaos test: "Unrecoverable error: 'NoneType' object has no attribute 'hostname'"). The timing
cannot be caused on purpose, so the dropped channel is stood in for here."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kombu.message import Message


class _DroppedChannel:
    """What a kombu Redis channel looks like once its connection was closed."""

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


def test_an_ack_on_a_dropped_channel_is_logged_not_fatal(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tasks.reconnect import tolerate_lost_acks

    tolerate_lost_acks()
    message = Message(body=b"{}", delivery_tag="tag-1", channel=_DroppedChannel())
    logger = logging.getLogger("test.ack")
    with caplog.at_level(logging.WARNING, logger="test.ack"):
        message.ack_log_error(logger, (ConnectionError,))
    assert any("visibility timeout" in r.getMessage() for r in caplog.records)
