"""`pve-balancer web`: a read-only status page served from the shared Redis state.

The cluster as the balancer sees it, the migration in flight, and the part no other balancer
shows: why it moved this VM and why not the others. Everything comes from
`balancer.status.collect_status`, the code path of `status --json` (served as-is at
`GET /api/status`); the page makes no PVE call of its own.

Tornado serves it (already here for Flower, so no new server to run or patch); its templates
escape every value. The first paint is plain server-rendered HTML; a few lines of script
then refresh the main part in place, and without script a `<noscript>` meta refresh does.
Basic auth comes from `WEB_BASIC_AUTH` (`user:password[,user2:password2]`, like Flower's).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
import tornado.httpserver
import tornado.netutil
import tornado.web

from balancer.config import Config
from balancer.render import clock, pct, seconds
from balancer.state import StateStore
from balancer.status import collect_status

log = logging.getLogger("balancer.web")

HERE = Path(__file__).parent
AUTH_ENV = "WEB_BASIC_AUTH"
#: How often the page refreshes itself.
REFRESH_SECONDS = 5
#: Decisions the page shows; the API answers like `status --json` unless asked.
DECISIONS = 10
CLI_DECISIONS = 5
#: Migrations shown (the same as `status --json`).
MIGRATIONS = 20

Credentials = Sequence[tuple[str, str]]


def parse_basic_auth(value: str | None) -> list[tuple[str, str]]:
    """`user:password[,user2:password2]` -> pairs; ValueError names the bad entry's position
    (never its text: it holds a password)."""
    if not value:
        return []
    pairs = []
    for index, entry in enumerate(value.split(","), start=1):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{AUTH_ENV}: entry {index} is not user:password")
        pairs.append((user, password))
    return pairs


class Page(tornado.web.RequestHandler):
    """Base: basic auth when configured, no caching, and the one state read."""

    def initialize(self, store: StateStore, config: Config, credentials: Credentials) -> None:
        self.store = store
        self.config = config
        self.credentials = credentials

    def prepare(self) -> None:
        self.set_header("Cache-Control", "no-store")
        if self.credentials and not self._authorised():
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Basic realm="pve-balancer"')
            self.finish("authentication required")

    def _authorised(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):  # not base64, or not ASCII at all
            return False
        # Bytes (UTF-8), so any password compares; every pair, always: the time taken says
        # nothing about which part was wrong.
        found = False
        for want_user, want_password in self.credentials:
            found |= (hmac.compare_digest(user, want_user.encode())
                      & hmac.compare_digest(password, want_password.encode()))
        return found

    def status(self, decisions: int = DECISIONS) -> dict[str, Any] | None:
        try:
            return collect_status(self.store, self.config, decisions, MIGRATIONS)
        except redis.exceptions.RedisError as exc:
            log.warning("status page: Redis unavailable: %s", type(exc).__name__)
            return None

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(pct=pct, clock=clock, seconds=seconds, width=_width,
                         refresh=REFRESH_SECONDS, headline=_headline)
        return namespace


class StatusPage(Page):
    def get(self) -> None:
        self.render("page.html", s=self.status())


class StatusFragment(Page):
    """The main part alone, for the in-place refresh."""

    def get(self) -> None:
        self.render("main.html", s=self.status())


class StatusApi(Page):
    """`GET /api/status[?decisions=N]`: the same JSON as `pve-balancer status --json
    [--decisions N]` (default 5, as there)."""

    def get(self) -> None:
        try:
            decisions = int(self.get_query_argument("decisions", str(CLI_DECISIONS)))
        except ValueError:
            raise tornado.web.HTTPError(400, "decisions: expected a whole number") from None
        found = self.status(max(0, min(decisions, 100)))
        if found is None:
            self.set_status(503)
            found = {"error": "Redis unavailable"}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(found, default=str))


class Health(tornado.web.RequestHandler):
    """For container health checks: answers without auth, and says nothing about the cluster."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish("ok")


def _width(ratio: float | None) -> str:
    """A bar's width in percent of its track, clamped."""
    return "0" if ratio is None else f"{max(0.0, min(1.0, ratio)) * 100:.1f}"


def _headline(decision: dict[str, Any]) -> str:
    explanation = decision.get("explanation") or []
    return str(explanation[0]) if explanation else str(decision.get("action", ""))


def make_app(store: StateStore, config: Config,
             credentials: Credentials = ()) -> tornado.web.Application:
    args = {"store": store, "config": config, "credentials": list(credentials)}
    return tornado.web.Application(
        [(r"/", StatusPage, args), (r"/fragment", StatusFragment, args),
         (r"/api/status", StatusApi, args), (r"/healthz", Health)],
        template_path=str(HERE / "templates"), static_path=str(HERE / "static"),
        autoescape="xhtml_escape", compiled_template_cache=True)


def run_web(config: Config, port: int, addr: str, *,
            ready: Callable[[int], None] | None = None,
            stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`); `ready(port)` once listening."""
    credentials = parse_basic_auth(os.environ.get(AUTH_ENV))
    store = StateStore.from_url(config.redis.url.reveal(), socket_timeout=2.0)
    app = make_app(store, config, credentials)

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(port, address=addr)
        server.add_sockets(sockets)
        bound = sockets[0].getsockname()[1]
        log.info("status page on http://%s:%s/ (basic auth %s)", addr, bound,
                 "on" if credentials else "off")
        if ready is not None:
            ready(bound)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, done.set)
        if stop is not None:
            loop.run_in_executor(None, lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)))
        await done.wait()
        server.stop()

    asyncio.run(serve())
    store.close()
