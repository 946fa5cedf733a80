"""Request dispatch: auth, faults, routing, parameter checks and PVE's response envelope.

Transport-free (method, path, headers, body in; status, reason, body out) so it can be tested
without sockets; server.py puts it behind HTTPS.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pvesim import endpoints
from pvesim.cluster import Cluster, RequestRecord
from pvesim.errors import ApiError
from pvesim.faults import Faults
from pvesim.params import validate
from pvesim.routing import ROUTES, Ctx, Paged, Route, find, split_path

PREFIX = "/api2/json"
CONTENT_TYPE = "application/json;charset=UTF-8"
TICKET_LIFETIME = 7200.0


@dataclass(frozen=True)
class Response:
    """An HTTP answer; `reason` is the status line text (PVE's error message lives there)."""

    status: int
    reason: str
    body: bytes
    content_type: str = CONTENT_TYPE

    @property
    def close(self) -> bool:
        """pve-http-server closes the connection after error responses."""
        return self.status >= 400


def _ok(data: Any) -> Response:
    payload: dict[str, Any]
    if isinstance(data, Paged):
        payload = {"data": data.data, "total": data.total}
    else:
        payload = {"data": data}
    return Response(200, "OK", json.dumps(payload, separators=(",", ":")).encode())


def _error(exc: ApiError) -> Response:
    body = b""
    if exc.body:
        payload: dict[str, Any] = {"data": None, "message": exc.message.rstrip("\n") + "\n"}
        if exc.errors:
            payload["errors"] = exc.errors
        body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(exc.status, exc.reason, body)


def _form(body: bytes, content_type: str) -> dict[str, str]:
    if not body:
        return {}
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"failed to parse JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "JSON body must be an object")
        result = {}
        for key, value in data.items():
            if isinstance(value, bool):
                value = int(value)
            result[str(key)] = str(value)
        return result
    return dict(parse_qsl(text, keep_blank_values=True))


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    for part in headers.get("Cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return unquote(value)
    return None


class Api:
    """Answers API requests against one Cluster; `lock` guards the cluster and all logs."""

    def __init__(self, cluster: Cluster, lock: threading.RLock, faults: Faults) -> None:
        self.cluster = cluster
        self.lock = lock
        self.faults = faults
        self.fault_rng = random.Random(cluster.seed + 1)
        self._tickets: dict[str, tuple[str, str, float]] = {}

    # ----- auth ------------------------------------------------------------------------

    def _authenticate(self, method: str, headers: Mapping[str, str]) -> str:
        """The authid (`user@realm!token` or `user@realm`), or ApiError 401."""
        auth = self.cluster.scenario.auth
        header = headers.get("Authorization", "").strip()
        if header.startswith("PVEAPIToken"):
            rest = header[len("PVEAPIToken") :].lstrip("= ").strip()
            token_id, _, secret = rest.partition("=")
            if token_id == auth.token_id and secrets.compare_digest(secret, auth.token_value):
                return token_id
            raise ApiError(401, "Authentication failed!", body=False)
        ticket = _cookie(headers, "PVEAuthCookie")
        if header.startswith("PVEAuthCookie="):
            ticket = header.split("=", 1)[1]
        if ticket is None:
            raise ApiError(401, "No ticket", body=False)
        with self.lock:
            known = self._tickets.get(ticket)
        if known is None or time.monotonic() - known[2] > TICKET_LIFETIME:
            raise ApiError(401, "Authentication failed!", body=False)
        user, csrf, _ = known
        if method != "GET" and headers.get("CSRFPreventionToken") != csrf:
            raise ApiError(401, "Permission denied - invalid csrf token", body=False)
        return user

    def _ticket(self, params: Mapping[str, Any]) -> dict[str, Any]:
        auth = self.cluster.scenario.auth
        username = str(params["username"])
        if params.get("realm") and "@" not in username:
            username = f"{username}@{params['realm']}"
        if auth.password is None or username != auth.user or params["password"] != auth.password:
            raise ApiError(401, "authentication failure", body=False)
        stamp = f"{int(self.cluster.clock.now()):08X}"
        ticket = f"PVE:{username}:{stamp}::{secrets.token_urlsafe(48)}"
        csrf = f"{stamp}:{secrets.token_urlsafe(32)}"
        with self.lock:
            self._tickets[ticket] = (username, csrf, time.monotonic())
        return {
            "username": username,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "clustername": self.cluster.scenario.cluster.name,
            "cap": {},
        }

    # ----- dispatch --------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Answer one request; always returns a Response (errors included) and logs it."""
        real = time.time()
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        api_path = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        api_path = "/" + "/".join(split_path(api_path))
        data: dict[str, str] = {}
        authid: str | None = None
        try:
            data = _form(body, headers.get("Content-Type", ""))
            with self.lock:
                decision = self.faults.decide(self.fault_rng, method, api_path)
            if decision.delay:
                time.sleep(decision.delay)
            if decision.status is not None:
                raise ApiError(decision.status, decision.message, body=decision.status < 595)
            if not path.startswith(PREFIX + "/") and path != PREFIX:
                raise ApiError(501, f"Method '{method} {path}' not implemented")
            found = find(method, api_path)
            if found is not None and found[0].public:
                response = self._public(found[0], found[1], query, data)
            else:
                try:
                    authid = self._authenticate(method, headers)
                except ApiError:
                    delay = self.cluster.scenario.auth.failure_delay
                    if delay:
                        time.sleep(delay)
                    raise
                response = self._dispatch(method, api_path, found, query, data, authid)
            if decision.truncate and response.status == 200:
                response = dataclasses.replace(response, body=response.body[: len(response.body)
                                                                             // 2])
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:  # a simulator bug: answer like PVE's generic `die`, loudly
            traceback.print_exc(file=sys.stderr)
            response = _error(ApiError(500, f"pvesim internal error: {exc!r}"))
        with self.lock:
            self.cluster.request_log.append(
                RequestRecord(
                    sim_time=self.cluster.clock.now(),
                    real_time=real,
                    method=method,
                    path=api_path,
                    query=query,
                    data=data,
                    status=response.status,
                    user=authid,
                    user_agent=headers.get("User-Agent", ""),
                )
            )
        return response

    def _public(
        self, route: Route, path_params: dict[str, str], query: dict[str, str], data: dict[str, str]
    ) -> Response:
        params = validate(route.full_schema(), {**query, **data, **path_params})
        return _ok(self._ticket(params))

    def _dispatch(
        self,
        method: str,
        api_path: str,
        found: tuple[Route, dict[str, str]] | None,
        query: dict[str, str],
        data: dict[str, str],
        authid: str,
    ) -> Response:
        if found is None:
            raise ApiError(501, f"Method '{method} {api_path}' not implemented")
        route, path_params = found
        with self.lock:
            now = self.cluster.sync()
            ctx = Ctx(authid=authid, now=now, privileged=self.cluster.sys_audit)
            if route.sys_audit and not ctx.privileged:
                priv = "Sys.Console" if method != "GET" else "Sys.Audit"
                raise ApiError(403, f"Permission check failed (/, {priv})")
            node = path_params.get("node")
            if node is not None and route.parts[0] == "nodes":
                endpoints.ensure_node(self.cluster, node)
                if route.proxy and not self.cluster.node_online(node):
                    raise ApiError(595, "No route to host", body=False)
            params = validate(route.full_schema(), {**query, **data, **path_params})
            return _ok(route.handler(self.cluster, ctx, params))


def route_table() -> list[str]:
    """Every implemented `METHOD /path` (for docs and tests)."""
    return [f"{r.method} /{'/'.join(r.parts)}" for r in ROUTES]
