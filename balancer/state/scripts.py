"""Several Lua scripts in one round trip.

A cycle updates three independent averages (node EMA, guest EMA, proactive holds), each one
atomic script on its own key. Sent as EVALSHAs in one pipeline they cost one round trip; a
script the server has not cached (after a restart) answers NOSCRIPT without running, and is
then run alone (which loads it), so each still runs exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from redis.commands.core import Script

T = TypeVar("T")


@dataclass(frozen=True)
class ScriptCall(Generic[T]):
    """One script invocation and how to read its reply."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]
    parse: Callable[[Any], T]

    def run(self) -> T:
        return self.parse(self.script(keys=list(self.keys), args=list(self.args)))


def run_together(client: redis.Redis, calls: Sequence[ScriptCall[Any]]) -> list[Any]:
    """Every call's parsed reply, in order; one round trip when the scripts are cached."""
    return run_after(client.pipeline(transaction=False), calls)[1]


def run_after(pipe: redis.client.Pipeline, calls: Sequence[ScriptCall[Any]]
              ) -> tuple[list[Any], list[Any]]:
    """Execute the commands already queued in `pipe` (not a transaction) and then `calls`,
    in one round trip: (the queued commands' replies, every call's parsed reply)."""
    queued = len(pipe.command_stack)
    for call in calls:
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    replies = pipe.execute(raise_on_error=False)
    for reply in replies[:queued]:
        if isinstance(reply, Exception):
            raise reply
    out: list[Any] = []
    for call, reply in zip(calls, replies[queued:], strict=True):
        if isinstance(reply, redis.exceptions.NoScriptError):
            out.append(call.run())
        elif isinstance(reply, Exception):
            raise reply
        else:
            out.append(call.parse(reply))
    return replies[:queued], out
