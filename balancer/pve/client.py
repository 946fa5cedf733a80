"""The PVE API client: proxmoxer over HTTPS with an API token, host failover, bounded retries
for reads, a careful migrate, and typed errors that never carry the token's secret."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.backends.https import JsonSerializer
from proxmoxer.tools import Tasks
from urllib3.exceptions import NewConnectionError

from balancer import installed_version
from balancer.cache import JsonCache, MemoryCache
from balancer.config import ProxmoxConfig
from balancer.pve.errors import (
    PveApiError,
    PveAuthError,
    PveError,
    PveMigrationUnconfirmed,
    PvePermissionError,
    PveUnreachable,
)
from balancer.pve.parse import (
    find_running_migrations,
    number,
    parse_cluster_options,
    parse_cluster_status,
    parse_ha_rules,
    parse_ha_status,
    parse_precondition,
    parse_task_status,
    parse_tasks,
    parse_vm_status,
)
from balancer.pve.records import (
    OUR_MIGRATE_TYPES,
    ClusterOptions,
    ClusterStatus,
    HaRules,
    HaStatus,
    Precondition,
    RunningMigration,
    TaskInfo,
    TaskStatus,
    VmStatus,
)
from balancer.pve.wire import decode_resources

log = logging.getLogger(__name__)

#: How the client names itself to PVE; pvesim's conformance check selects our requests by it.
def _user_agent() -> str:
    return f"pve-balancer/{installed_version() or 'unknown'}"


USER_AGENT = _user_agent()

#: The shortest timeout a request gets when a deadline is nearly used up.
MIN_ATTEMPT_SECONDS = 0.5

#: Seconds the slow-changing reads (HA rules, HA status, cluster options) are shared.
SLOW_TTL_SECONDS = 60.0
#: Tasks one node's history read returns at most (PVE's default is 50; 0 returns nothing).
TASK_HISTORY_LIMIT = 1000
#: Seconds `/cluster/tasks` is shared; PVE refreshes it about every 10 s anyway.
TASKS_TTL_SECONDS = 10.0

#: 500 answers that are PVE's verdict on the request, not a sick host: never retried.
_DEFINITIVE_500 = re.compile(
    r"does not exist|is locked|no such|not implemented|only root|can't migrate|"
    r"already|not running|parameter verification|hostname lookup|not available on node|"
    r"is disabled|cannot live-migrate|content type", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"PVEAPIToken=[^'\"\s]*")
_PERMISSION = re.compile(r"Permission check failed \(\s*([^,()]+?)\s*,\s*([^()]+?)\s*\)")

#: Task types a migrate POST of ours leaves behind (plain VM / HA-managed VM).


@dataclass(frozen=True, slots=True)
class _Failure:
    host: str
    reason: str
    status: int | None = None  # HTTP status when the host answered
    message: str = ""
    delivered: bool = True  # False only when the request surely never reached PVE


@dataclass(frozen=True, slots=True)
class _Final:
    """A host answered with an error no other host or retry will change."""

    host: str
    error: PveError


#: The slow-changing reads shared through the cache (see `_cached`).
CACHED_NAMES = ("ha_rules", "ha_status", "options", "tasks")


class FastJsonSerializer(JsonSerializer):
    """proxmoxer's JSON serializer, parsing with orjson. What orjson refuses (not JSON, not
    UTF-8) goes to proxmoxer's own parser, so errors read as before; an integer beyond 64 bits
    reads as a float (PVE sends none; the snapshot refuses it either way)."""

    def loads(self, response: Any) -> Any:
        try:
            return orjson.loads(response.content)["data"]
        except orjson.JSONDecodeError:
            return super().loads(response)


class ResourcesSerializer(FastJsonSerializer):
    """`/cluster/resources` decoded into typed `ResourceEntry` records (balancer/pve/wire.py);
    an answer that does not fit PVE's schema is read the generic way."""

    def loads(self, response: Any) -> Any:
        entries = decode_resources(response.content)
        return entries if entries is not None else super().loads(response)


class QuietBody(bytes):
    """A response body whose repr is its size. proxmoxer formats every answer's body into a
    DEBUG message (`output: {resp.content!r}`) whether DEBUG is on or not: 17 ms of every
    cycle at 10,000 guests, and, with DEBUG on, the whole cluster inventory in the log."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


def _quiet_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """requests' response hook: the body read once, kept as a `QuietBody`."""
    response._content = QuietBody(response.content)
    return response


RESOURCES_SERIALIZER = ResourcesSerializer()


class PveClient:
    """Typed access to one PVE cluster through any of its configured hosts.

    Reads (GET) are retried with exponential backoff and jitter, trying every host each round
    and starting with the one that answered last. The migrate POST is sent once; when its fate
    is unclear the client looks for the task it would have started instead of sending it again.
    """

    def __init__(
        self,
        config: ProxmoxConfig,
        cache: JsonCache | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 5.0,
        slow_ttl: float = SLOW_TTL_SECONDS,
        tasks_ttl: float = TASKS_TTL_SECONDS,
        confirm_delay: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not config.hosts:
            raise ValueError("proxmox.hosts is empty")
        self.config = config
        self.cache: JsonCache = cache if cache is not None else MemoryCache()
        self.clock = clock
        self._sleep = sleep
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self.slow_ttl = slow_ttl
        self.tasks_ttl = tasks_ttl
        self._confirm_delay = confirm_delay
        self._rng = rng or random.Random()
        self._apis: dict[str, ProxmoxAPI] = {}
        self._active = config.hosts[0]
        digest = hashlib.sha256(",".join(sorted(config.hosts)).encode()).hexdigest()[:12]
        self._cache_prefix = f"pve:{digest}:"
        self._prefetched: dict[str, Any] = {}
        self.api_calls = 0
        #: `time.monotonic()` by which every read must be done (see `deadline`); None: no limit.
        self._deadline: float | None = None
        if config.ca_bundle and config.verify_ssl:
            self._verify: bool | str = config.ca_bundle
        else:
            self._verify = config.verify_ssl
        if not config.verify_ssl:
            log.warning("TLS certificate verification is OFF for PVE hosts %s: anyone on the "
                        "path can read the API token; set proxmox.verify_ssl (with ca_bundle "
                        "for a private CA)", ", ".join(config.hosts))

    # --- identity ----------------------------------------------------------------------

    @property
    def token_id(self) -> str:
        """`user@realm!token`: how PVE names us in task lists and UPIDs."""
        return f"{self.config.user}!{self.config.token_name}"

    @property
    def active_host(self) -> str:
        """The host that answered last (tried first next time)."""
        return self._active

    # --- deadline ----------------------------------------------------------------------

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Every request inside must end within `seconds` from now, retries and failover to
        the other hosts included: a hung first host then costs its share of the time, not the
        whole cycle (a nested deadline can only shorten the outer one)."""
        previous = self._deadline
        ends = time.monotonic() + max(0.0, seconds)
        self._deadline = ends if previous is None else min(previous, ends)
        try:
            yield
        finally:
            self._deadline = previous

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _attempt_timeout(self, hosts_left: int) -> float | None:
        """This request's timeout: the configured one, or a fair share of what is left of the
        deadline among the hosts still to try this round; None when the deadline has passed."""
        remaining = self._remaining()
        if remaining is None:
            return self.config.timeout_seconds
        if remaining <= 0:
            return None
        share = remaining / max(1, hosts_left)
        return max(MIN_ATTEMPT_SECONDS, min(self.config.timeout_seconds, share))

    # --- transport ---------------------------------------------------------------------

    def _api(self, host: str) -> ProxmoxAPI:
        api = self._apis.get(host)
        if api is None:
            api = ProxmoxAPI(host, backend="https", service="PVE", user=self.config.user,
                             token_name=self.config.token_name,
                             token_value=self.config.token_value.reveal(),
                             verify_ssl=self._verify, timeout=self.config.timeout_seconds)
            store = getattr(api, "_store", {})
            session = store.get("session")
            if session is not None:  # name ourselves in PVE's logs (and in pvesim's)
                session.headers["User-Agent"] = USER_AGENT
                session.hooks["response"].append(_quiet_body)
                _read_environment_once(session, store.get("base_url"))
            if isinstance(store.get("serializer"), JsonSerializer):
                store["serializer"] = FastJsonSerializer()
            self._apis[host] = api
        return api

    def _host_order(self) -> list[str]:
        return [self._active, *(h for h in self.config.hosts if h != self._active)]

    def _demote(self, host: str) -> None:
        """A host that just failed is not tried first next time (a hung first host would
        otherwise cost every cycle its timeout before failover)."""
        if host == self._active and len(self.config.hosts) > 1:
            order = self.config.hosts
            self._active = order[(order.index(host) + 1) % len(order)]

    def _scrub(self, message: str) -> str:
        """`message` without the token secret or an Authorization header value (belt and
        braces: none should contain them, but requests quotes a bad header in its error)."""
        secret = self.config.token_value.reveal()
        if secret:
            for form in {secret, secret.strip(), repr(secret)[1:-1]}:
                if form:
                    message = message.replace(form, "***")
        return _AUTH_HEADER.sub("PVEAPIToken=***", message)

    def _send(self, host: str, method: str, path: str, params: Mapping[str, Any],
              timeout: float | None = None, serializer: JsonSerializer | None = None) -> Any:
        """One HTTP request to one host: the decoded `data`, a `_Final` error, or a `_Failure`
        that another host or a retry may fix. Errors are built outside the `except` blocks so
        no requests object (which holds the Authorization header) rides along as context."""
        api = self._api(host)
        _set_timeout(api, timeout if timeout is not None else self.config.timeout_seconds)
        resource = api(path)
        if serializer is not None:  # this request's own copy of proxmoxer's settings
            resource._store["serializer"] = serializer
        self.api_calls += 1
        failure: _Failure | None = None
        final: PveError | None = None
        try:
            result = resource.get(**params) if method == "GET" else resource.post(**params)
        except ResourceException as exc:
            final, failure = self._classify_answer(host, method, path, exc)
        except requests.exceptions.RequestException as exc:
            failure = self._classify_transport(host, exc)
        else:
            if isinstance(result, dict) and set(result) == {"errors"} and isinstance(
                    result["errors"], bytes):
                # No status: what answered is not PVE's API, so the call is "unreachable"
                # (exit 4), not an API error.
                failure = _Failure(host, "answer was not JSON: not a PVE API (wrong host or "
                                   "port, or a proxy page?)")
            else:
                return result
        if final is not None:
            return _Final(host, final)
        return failure

    def _classify_answer(self, host: str, method: str, path: str,
                         exc: ResourceException) -> tuple[PveError | None, _Failure | None]:
        status = int(exc.status_code)
        message = self._scrub(str(exc.content or "").strip() or str(exc.status_message or ""))
        if isinstance(exc.errors, dict) and exc.errors and not (
                set(exc.errors) == {"errors"} and isinstance(exc.errors["errors"], bytes)):
            details = ", ".join(f"{k}: {str(v).strip()}" for k, v in exc.errors.items())
            message = f"{message} ({self._scrub(details)})"
        if status == 401:
            return PveAuthError(self.config.user, self.config.token_name, host), None
        if status == 404:
            # pve-http-server answers 501 for any path it does not know, never 404
            # (PVE::APIServer::AnyEvent::rest_handler): whatever answered is not PVE's API.
            return None, _Failure(host, "not a PVE API: HTTP 404 for /api2/json (PVE answers "
                                  "501 for an unknown path); wrong host or port?",
                                  delivered=False)
        if status == 403:
            match = _PERMISSION.search(message)
            return PvePermissionError(
                method=method, api_path=path, host=host, pve_message=message,
                privilege=match.group(2) if match else None,
                acl_path=match.group(1) if match else None), None
        if status < 500 or status == 501 or (status == 500 and _DEFINITIVE_500.search(message)):
            return PveApiError(status, message, method=method, api_path=path, host=host), None
        return None, _Failure(host, f"HTTP {status} {message}".strip(), status=status,
                              message=message)

    def _classify_transport(self, host: str,
                            exc: requests.exceptions.RequestException) -> _Failure:
        text = self._scrub(str(exc))
        delivered = True
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            reason, delivered = "connect timeout", False
        elif isinstance(exc, requests.exceptions.SSLError):
            reason, delivered = f"TLS error: {_tail(text)}", False
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                reason += (" (PVE's certificate is not trusted here: set proxmox.ca_bundle "
                           "to its CA, a copy of /etc/pve/pve-root-ca.pem from a node)")
        elif isinstance(exc, requests.exceptions.Timeout):
            reason = "no answer in time"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            cause = exc.args[0] if exc.args else None
            inner = getattr(cause, "reason", cause)
            if isinstance(inner, NewConnectionError):
                delivered = False
                if "refused" in str(inner).lower():
                    reason = "connection refused"
                elif "resolve" in str(inner).lower() or "name" in str(inner).lower():
                    reason = "host name not resolvable"
                else:
                    reason = f"cannot connect: {_tail(self._scrub(str(inner)))}"
            else:
                reason = f"connection lost: {_tail(text)}"
        else:
            reason = f"{type(exc).__name__}: {_tail(text)}"
        return _Failure(host, reason, delivered=delivered)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        return delay * (0.5 + self._rng.random() / 2)

    def get(self, path: str, /, **params: Any) -> Any:
        """GET `path` (relative to /api2/json), with host failover and bounded retries.
        Parameters whose value is None are left out; booleans go out as 1/0."""
        return self._get(path, {k: _wire(v) for k, v in params.items() if v is not None})

    def _get(self, path: str, clean: Mapping[str, Any],
             serializer: JsonSerializer | None = None) -> Any:
        failures: list[_Failure] = []
        for attempt in range(self._max_attempts):
            if attempt:
                delay = self._backoff(attempt)
                remaining = self._remaining()
                if remaining is not None and remaining <= delay:
                    break
                log.info("retrying GET /%s in %.2fs after: %s", path, delay,
                         "; ".join(f"{f.host}: {f.reason}" for f in failures[-2:]))
                self._sleep(delay)
            order = self._host_order()
            for i, host in enumerate(order):
                timeout = self._attempt_timeout(len(order) - i)
                if timeout is None:
                    failures.append(_Failure(host, "deadline passed", delivered=False))
                    raise self._exhausted("GET", path, failures)
                result = self._send(host, "GET", path, clean, timeout, serializer)
                if isinstance(result, _Final):
                    self._active = host
                    raise result.error
                if isinstance(result, _Failure):
                    failures.append(result)
                    log.warning("PVE host %s failed GET /%s: %s", host, path, result.reason)
                    self._demote(host)
                    continue
                self._active = host
                return result
        raise self._exhausted("GET", path, failures)

    def _exhausted(self, method: str, path: str, failures: list[_Failure]) -> PveError:
        answered = [f for f in failures if f.status is not None]
        if answered:
            last = answered[-1]
            return PveApiError(last.status or 0, last.message or last.reason, method=method,
                               api_path=path, host=last.host)
        return PveUnreachable([(f.host, f.reason) for f in failures])

    # --- cache -------------------------------------------------------------------------

    def prefetch_cached(self) -> None:
        """Read every cached payload in one round trip (a cycle reads all of them); the next
        read of each uses it once. A sick cache only loses the shortcut."""
        keys = [self._cache_prefix + name for name in CACHED_NAMES]
        try:
            self._prefetched = self.cache.get_many(keys)
        except Exception as exc:  # a sick cache must not stop reads
            log.warning("cache read failed: %s", exc)
            self._prefetched = {}

    def _cached(self, name: str, path: str, ttl: float,
                fallback_501: Any = ...) -> Any:
        key = self._cache_prefix + name
        now = self.clock()
        try:
            entry = (self._prefetched.pop(key) if key in self._prefetched
                     else self.cache.get(key))
        except Exception as exc:  # a sick cache must not stop reads
            log.warning("cache read %s failed: %s", key, exc)
            entry = None
        if isinstance(entry, Mapping) and "data" in entry:
            at = number(entry.get("at"))
            if at is not None and -ttl < now - at < ttl:
                return entry["data"]
        try:
            data = self.get(path)
        except PveApiError as exc:
            if exc.status != 501 or fallback_501 is ...:
                raise
            log.warning("GET /%s is not implemented on this PVE (%s)", path, exc.message)
            data = fallback_501
        try:
            self.cache.set(key, {"at": now, "data": data}, ttl)
        except Exception as exc:
            log.warning("cache write %s failed: %s", key, exc)
        return data

    def invalidate_cache(self) -> None:
        """Forget the shared slow reads (e.g. after the operator changed HA rules)."""
        for name in ("ha_rules", "ha_status", "options", "tasks"):
            try:
                self.cache.set(self._cache_prefix + name, None, 0)
            except Exception as exc:
                log.warning("cache invalidate failed: %s", exc)

    def ha_rules_payload(self) -> Any:
        """Raw `/cluster/ha/rules` (cached); None on PVE without rules (HTTP 501)."""
        return self._cached("ha_rules", "cluster/ha/rules", self.slow_ttl, fallback_501=None)

    def ha_status_payload(self) -> Any:
        """Raw `/cluster/ha/status/manager_status` (cached)."""
        return self._cached("ha_status", "cluster/ha/status/manager_status", self.slow_ttl)

    def cluster_options_payload(self) -> Any:
        """Raw `/cluster/options` (cached)."""
        return self._cached("options", "cluster/options", self.slow_ttl)

    def cluster_tasks_payload(self) -> Any:
        """Raw `/cluster/tasks` (cached ~10 s)."""
        return self._cached("tasks", "cluster/tasks", self.tasks_ttl)

    # --- typed reads -------------------------------------------------------------------

    def resource_entries(self) -> Any:
        """`/cluster/resources` for the snapshot: `ResourceEntry` records when the answer has
        PVE's schema types (the every-cycle case), else the payload as decoded generically
        (the snapshot says what is wrong with it)."""
        return self._get("cluster/resources", {}, RESOURCES_SERIALIZER)

    def cluster_resources(self) -> list[dict[str, Any]]:
        """`/cluster/resources` entries (nodes, guests, storage, ...) as PVE sent them."""
        payload = self.get("cluster/resources")
        if not isinstance(payload, list):
            raise PveApiError(200, f"/cluster/resources returned {type(payload).__name__}, "
                                   "not a list", method="GET", api_path="cluster/resources",
                              host=self._active)
        return [entry for entry in payload if isinstance(entry, dict)]

    def cluster_status(self) -> ClusterStatus:
        return parse_cluster_status(self.get("cluster/status"))

    def cluster_tasks(self) -> list[TaskInfo]:
        return parse_tasks(self.cluster_tasks_payload())

    def ha_rules(self) -> HaRules:
        return parse_ha_rules(self.ha_rules_payload())

    def ha_status(self) -> HaStatus:
        return parse_ha_status(self.ha_status_payload())

    def cluster_options(self) -> ClusterOptions:
        return parse_cluster_options(self.cluster_options_payload())

    def version(self) -> str:
        """PVE version of the answering host, e.g. `9.0.3`."""
        payload = self.get("version")
        if isinstance(payload, Mapping) and isinstance(payload.get("version"), str):
            return str(payload["version"])
        return "unknown"

    def permissions(self, path: str | None = None) -> dict[str, dict[str, bool]]:
        """`/access/permissions` of the token: ACL path -> privilege -> propagates."""
        payload = self.get("access/permissions", path=path)
        out: dict[str, dict[str, bool]] = {}
        if isinstance(payload, Mapping):
            for acl_path, privs in payload.items():
                if isinstance(privs, Mapping):
                    out[str(acl_path)] = {str(p): bool(v) for p, v in privs.items()}
        return out

    def running_migrations(
            self, resources: list[dict[str, Any]] | None = None) -> list[RunningMigration]:
        """Guests being moved now: migrate tasks without an end (cached task list), HA services
        in migrate/relocate (cached HA status) and guests locked for migration (`resources`,
        read fresh when not given)."""
        if resources is None:
            resources = self.cluster_resources()
        return find_running_migrations(self.cluster_tasks(), self.ha_status(), resources,
                                       now=self.clock())

    def migrate_precondition(self, node: str, vmid: int) -> Precondition:
        """PVE's verdict on moving `vmid` to each other node. No `target` is sent: PVE accepts
        and ignores it, the answer always covers every node."""
        payload = self.get(f"nodes/{node}/qemu/{int(vmid)}/migrate")
        return parse_precondition(payload, node, int(vmid))

    def vm_status(self, node: str, vmid: int) -> VmStatus:
        return parse_vm_status(self.get(f"nodes/{node}/qemu/{int(vmid)}/status/current"),
                               node, int(vmid))

    def task_status(self, upid: str) -> TaskStatus:
        try:
            node = Tasks.decode_upid(upid)["node"]
        except (AssertionError, ValueError):
            raise PveError(f"not a UPID: {upid!r}") from None
        return parse_task_status(self.get(f"nodes/{node}/tasks/{upid}/status"), upid)

    def find_vm_tasks(self, node: str, vmid: int, since: float,
                      typefilter: str | None = None) -> list[TaskInfo]:
        """Tasks for `vmid` on `node` started at or after `since` (finished and running), e.g.
        the `qmigrate` that HA's LRM starts after our `hamigrate`."""
        payload = self.get(f"nodes/{node}/tasks", vmid=int(vmid), since=int(since),
                           typefilter=typefilter, source="all")
        return [t for t in parse_tasks(payload)
                if t.starttime >= int(since) and (typefilter is None or t.type == typefilter)]

    def recent_balancer_migrations(self, since: float,
                                   nodes: list[str]) -> list[TaskInfo]:
        """Our own migrate tasks (qmigrate/hamigrate by this token) started on `nodes` since
        `since`: enough to rebuild cooldowns after the state store was wiped. Read per node:
        `/cluster/tasks` keeps only ~25 finished tasks per node (pve-common
        RESTEnvironment.pm), which a busy node's backups and consoles push out in minutes."""
        found: list[TaskInfo] = []
        for node in nodes:
            payload = self.get(f"nodes/{node}/tasks", source="all", since=int(since),
                               userfilter=self.config.user, limit=TASK_HISTORY_LIMIT)
            found += (t for t in parse_tasks(payload)
                      if self.started_migration(t) and t.starttime >= since)
        return sorted(found, key=lambda t: t.starttime)

    def started_migration(self, task: TaskInfo) -> bool:
        """Whether `task` is a migrate task this client's token started."""
        return task.type in OUR_MIGRATE_TYPES and task.user == self.token_id

    # --- migrate -----------------------------------------------------------------------

    def migrate(self, node: str, vmid: int, target: str) -> str:
        """Start a live migration of VM `vmid` from `node` to `target`; return the task UPID.

        Sends `online=1` only (no local-disk copy, no root-only options). An HA-managed VM gets
        a `hamigrate` UPID: the real move is a later `qmigrate` by HA (see `find_vm_tasks`).
        The POST is never repeated after it may have reached PVE: on a timeout, a dropped
        connection or a 5xx the client looks for the task it would have started and returns
        that UPID, or raises (`PveMigrationUnconfirmed` when PVE's answer was lost)."""
        vmid = int(vmid)
        if node == target:
            raise PveError(f"migration of {vmid}: target {target} is its current node")
        path = f"nodes/{node}/qemu/{vmid}/migrate"
        data = {"target": target, "online": 1}
        started = self.clock()
        failures: list[_Failure] = []
        for host in self._host_order():
            result = self._send(host, "POST", path, data)
            if isinstance(result, _Final):
                self._active = host
                raise result.error
            if not isinstance(result, _Failure):
                self._active = host
                if not (isinstance(result, str) and result.startswith("UPID:")):
                    raise PveApiError(200, f"migrate returned {result!r}, not a UPID",
                                      method="POST", api_path=path, host=host)
                log.info("migration of %s from %s to %s started: %s", vmid, node, target,
                         result)
                return result
            failures.append(result)
            if result.delivered:
                break  # PVE may have acted on it: never send it again blindly
            log.warning("PVE host %s did not take POST /%s (%s); trying the next host",
                        host, path, result.reason)
        last = failures[-1]
        if not last.delivered:
            raise PveUnreachable([(f.host, f.reason) for f in failures])
        log.warning("POST /%s failed ambiguously on %s (%s); checking whether it started",
                    path, last.host, last.reason)
        upid, locked = self._find_started_migration(node, vmid, started)
        if upid is None and last.status != 500:
            # An answer may still be in flight; look once more after a short pause.
            self._sleep(self._confirm_delay)
            upid, locked = self._find_started_migration(node, vmid, started)
        if upid is not None:
            log.info("migration of %s to %s did start despite the error: %s", vmid, target, upid)
            return upid
        if last.status == 500:
            raise PveApiError(500, last.message, method="POST", api_path=path, host=last.host)
        raise PveMigrationUnconfirmed(vmid, target, f"{last.host}: {last.reason}", locked=locked)

    def _find_started_migration(self, node: str, vmid: int,
                                started: float) -> tuple[str | None, bool | None]:
        """(UPID of our migrate task for `vmid` started since `started`, VM locked?); the
        lock is None when neither the task list nor the VM status could be read."""
        since = int(started) - 60  # PVE's clock may lag ours a little
        listed = True
        try:
            # source=all: PVE's `active` list drops a task the moment it ends (Tasks.pm), and a
            # hamigrate or an early abort ends within a second.
            tasks = parse_tasks(self.get(f"nodes/{node}/tasks", source="all", vmid=vmid,
                                         since=since))
        except PveError as exc:
            log.warning("could not list tasks of %s on %s: %s", vmid, node, exc)
            tasks, listed = [], False
        for task in sorted(tasks, key=lambda t: -t.starttime):
            if self.started_migration(task) and task.vmid == vmid and task.starttime >= since:
                return task.upid, True
        try:
            status = self.vm_status(node, vmid)
        except PveError as exc:
            log.warning("could not read status of %s on %s: %s", vmid, node, exc)
            return None, False if listed else None
        return None, status.lock == "migrate"


def _read_environment_once(session: requests.Session, base_url: Any) -> None:
    """Take the proxy and CA bundle settings requests would read from the environment for
    this host (`HTTPS_PROXY`, `NO_PROXY`, `REQUESTS_CA_BUNDLE`...) now, and stop it reading
    them again. requests walks the whole environment twice per request, which costs more
    than the rest of a small cluster's cycle; a running worker's environment does not change,
    so the settings are the same ones. (The token is an auth object: netrc never applies.)"""
    if not isinstance(base_url, str) or not session.trust_env:
        return
    auth = session.auth
    verify = getattr(auth, "verify_ssl", True)
    settings = session.merge_environment_settings(base_url, {}, None, verify, None)
    session.proxies.update(settings["proxies"])
    if auth is not None and verify is True:
        auth.verify_ssl = settings["verify"]  # type: ignore[union-attr]
    session.trust_env = False


def _set_timeout(api: ProxmoxAPI, seconds: float) -> None:
    """proxmoxer reads every request's timeout from the session's auth object."""
    auth = getattr(getattr(api, "_store", {}).get("session"), "auth", None)
    if auth is not None and hasattr(auth, "timeout"):
        auth.timeout = seconds


def _wire(value: Any) -> Any:
    """PVE wants booleans as 1/0; proxmoxer would send `True`."""
    if isinstance(value, bool):
        return 1 if value else 0
    return value


def _tail(message: str, limit: int = 160) -> str:
    """The informative end of a long requests/urllib3 message."""
    message = message.strip()
    if "Caused by" in message:
        message = message.split("Caused by", 1)[1].strip(" ()")
    return message if len(message) <= limit else "..." + message[-limit:]
