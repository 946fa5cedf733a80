"""Notifications waiting to be sent, throttled at the door.

Whoever has something to say (evaluate, the migration's end, the CLI's pause) posts a
`Notice`; the worker's `balancer.notify` task takes them and sends them. Redis between the
two means a slow notification service never delays a cycle, the CLI needs no Apprise, and a
restart loses nothing queued. The throttle is checked in the same script as the push, so
two workers posting the same notice at once queue it once.

Layout: `P notify:outbox`, a list of `Notice` JSON (capped at `CAP`, PX a day);
`P notify:sent:<kind>:<subject>`, a flag with PX = the throttle; `P notify:sending`, the
one sender's token (PX a little over the task's time limit).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from balancer.notify import Notice
from balancer.state.keys import DEFAULT_PREFIX, Clock, RedisPart, text, to_ms
from balancer.state.scripts import ScriptCall, run_together

#: Notices kept while nobody sends them (no worker, a long outage): the newest win.
CAP = 200
#: The outbox outlives a day without any worker taking from it, then is dropped.
OUTBOX_TTL = 86400.0

# KEYS[1] outbox, KEYS[2] throttle flag. ARGV: notice JSON, throttle ms (0: none), cap, ttl ms.
_POST = """
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 0 end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


# KEYS[1] the send lock; ARGV[1] the owner's token: delete it only if still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Outbox(RedisPart):
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 clock: Clock = time.time) -> None:
        super().__init__(client, prefix, clock)
        self.outbox_key = self.key("notify", "outbox")
        self.send_lock_key = self.key("notify", "sending")
        self._post = client.register_script(_POST)
        self._release = client.register_script(_RELEASE)

    def post_call(self, notice: Notice, throttle: float) -> ScriptCall[bool]:
        """Queue `notice` unless the same kind and subject went out within its throttle
        (`notice.throttle` if set, else `throttle`); True when queued."""
        seconds = notice.throttle if notice.throttle is not None else throttle
        return ScriptCall(self._post, [self.outbox_key, self.key("notify", "sent",
                                                                 notice.throttle_key)],
                          [notice.to_json(), to_ms(seconds) if seconds > 0 else 0, CAP,
                           to_ms(OUTBOX_TTL)], bool)

    def post(self, notices: Sequence[Notice], throttle: float) -> list[bool]:
        """Every notice through its throttle, in one round trip."""
        if not notices:
            return []
        return run_together(self.client, [self.post_call(n, throttle) for n in notices])

    def requeue(self, notice: Notice) -> None:
        """Put back one that could not be delivered (not throttled again)."""
        self._post(keys=[self.outbox_key, self.key("notify", "sent", "-")],
                   args=[notice.to_json(), 0, CAP, to_ms(OUTBOX_TTL)])

    def take(self, limit: int) -> list[Notice]:
        """Up to `limit` notices, oldest first; each is taken by one worker only."""
        raw: Any = self.client.lpop(self.outbox_key, limit)
        found = (Notice.from_json(text(item)) for item in raw or [])
        return [notice for notice in found if notice is not None]

    @contextmanager
    def sending(self, seconds: float) -> Iterator[bool]:
        """One sender at a time: True inside when this caller holds the send lock (released
        after, if still its own; it runs out after `seconds` if the sender dies)."""
        token = uuid.uuid4().hex
        mine = bool(self.client.set(self.send_lock_key, token, nx=True, px=to_ms(seconds)))
        try:
            yield mine
        finally:
            if mine:
                self._release(keys=[self.send_lock_key], args=[token])

    def pending(self) -> int:
        return int(self.client.llen(self.outbox_key))
