"""`Skip`: why a cycle decides nothing. Raised by any step of evaluate, turned into a result."""

from __future__ import annotations


class Skip(Exception):
    """This cycle cannot decide safely; `kind` is a stable metric label, the message says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
