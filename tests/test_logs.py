"""Issue 19: log lines carry RFC 3339 UTC timestamps with milliseconds, whatever the host's
time zone, in both formats."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator

import pytest

from balancer.logs import JsonFormatter, KeyValueFormatter, event_fields

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def far_zone() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14: a local stamp would be a day off
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def record() -> logging.LogRecord:
    made = logging.LogRecord("balancer.evaluate", logging.INFO, __file__, 1, "decision", None,
                             None)
    made.created = 1796428800.25  # 2026-12-05T00:00:00.250Z
    made.__dict__.update(event_fields(action="migrate", vmid=104))
    return made


def test_json_lines_carry_utc_milliseconds(far_zone: None) -> None:
    line = json.loads(JsonFormatter().format(record()))
    assert line["ts"] == "2026-12-05T00:00:00.250Z"
    assert (line["event"], line["action"], line["vmid"]) == ("decision", "migrate", 104)


def test_text_lines_start_with_the_same_stamp(far_zone: None) -> None:
    text = KeyValueFormatter().format(record())
    assert text.startswith("2026-12-05T00:00:00.250Z INFO balancer.evaluate decision ")
    assert STAMP.match(text)
