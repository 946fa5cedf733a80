"""Structured logging: one line per decision and per migration event, key=value or JSON.

Events are logged as `log.info("decision", extra=event_fields(...))`; the formatter renders
the `fields` attribute. Secrets never reach here: callers pass plain facts, and the formatter
redacts any URL password it finds, as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
_TOKEN_HEADER = re.compile(r"(PVEAPIToken=\S+?=)\S+")


def scrub(text: str) -> str:
    """Remove credentials that might hide in a URL or an Authorization header."""
    return _TOKEN_HEADER.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def event_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` payload for a structured event line."""
    return {"fields": fields}


def _render_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(ch in text for ch in ' "='):
        return json.dumps(text)
    return text


def rfc3339(epoch: float) -> str:
    """`2026-11-25T14:00:00.123Z`: RFC 3339, UTC, milliseconds, whatever the host's zone."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class KeyValueFormatter(logging.Formatter):
    """`2026-11-25T14:00:00.123Z INFO balancer.evaluate decision action=migrate vmid=104 ...`"""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        parts = [rfc3339(record.created), record.levelname, record.name,
                 record.getMessage()]
        parts += [f"{key}={_render_value(value)}" for key, value in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(payload, default=str))


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Route the root logger to stderr with the chosen structured formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
