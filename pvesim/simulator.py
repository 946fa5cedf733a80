"""The public face of the fake: build a cluster from a scenario, steer it, watch it, serve it.

All methods are thread-safe (one lock shared with the API), so tests can change the cluster
while a balancer polls it over HTTPS.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvesim.api import Api
from pvesim.cluster import Cluster, GuestState, MigrationRecord, RequestRecord
from pvesim.errors import ApiError
from pvesim.faults import Faults
from pvesim.params import validate
from pvesim.routing import Ctx, find
from pvesim.scenario import GUEST_LOCKS, HA_NODE_STATES, Scenario, load_scenario, parse_crs
from pvesim.server import SimServer

#: datacenter.cfg keys spelled with an underscore (pve-cluster DataCenterConfig.pm).
_UNDERSCORE_OPTIONS = ("max_workers", "mac_prefix", "http_proxy", "email_from",
                       "migration_unsecure")


@dataclass(frozen=True)
class AuthInfo:
    """The credentials the fake accepts."""

    user: str
    token_name: str
    token_value: str
    password: str | None

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"


@dataclass(frozen=True)
class GuestInfo:
    """A snapshot of one guest (cpu is a share of its own vCPUs, memory in bytes)."""

    vmid: int
    name: str
    type: str
    node: str
    status: str
    lock: str | None
    hastate: str | None
    cpu: float
    mem: int
    memhost: int
    maxcpu: float
    maxmem: int
    template: bool
    tags: tuple[str, ...]
    migrating_to: str | None


@dataclass(frozen=True)
class NodeInfo:
    """A snapshot of one node (cpu is a fraction of its threads, memory in bytes)."""

    name: str
    online: bool
    hastate: str
    cpu: float
    cpu_demand: float
    mem: int
    maxcpu: int
    maxmem: int
    guests: tuple[int, ...]


@dataclass(frozen=True)
class TaskInfo:
    """A snapshot of one task."""

    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    endtime: float | None
    exitstatus: str | None
    log: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.exitstatus is None


class Simulator:
    """A simulated PVE 9 cluster. `speed` scales simulated time against real time."""

    def __init__(
        self,
        scenario: Scenario | Mapping[str, Any] | str | Path,
        speed: float = 1.0,
        seed: int = 0,
        start_time: float | None = None,
    ) -> None:
        self.scenario = load_scenario(scenario)
        self.lock = threading.RLock()
        self.cluster = Cluster(self.scenario, speed=speed, seed=seed, start=start_time)
        self.faults = Faults()
        self.api = Api(self.cluster, self.lock, self.faults)
        self._servers: list[SimServer] = []
        auth = self.scenario.auth
        self.auth = AuthInfo(auth.user, auth.token_name, auth.token_value, auth.password)

    # ----- time --------------------------------------------------------------------------

    @property
    def speed(self) -> float:
        return self.cluster.clock.speed

    def set_speed(self, speed: float) -> None:
        with self.lock:
            self.cluster.clock.set_speed(speed)

    @property
    def start_time(self) -> float:
        return self.cluster.clock.start

    def now(self) -> float:
        """Simulated epoch seconds."""
        with self.lock:
            return self.cluster.clock.now()

    def advance(self, seconds: float) -> float:
        """Jump the simulated clock forward and let everything due happen; returns now()."""
        with self.lock:
            self.cluster.clock.advance(seconds)
            return self.cluster.sync()

    # ----- steering ----------------------------------------------------------------------

    def _guest(self, vmid: int) -> GuestState:
        g = self.cluster.guests.get(vmid)
        if g is None:
            raise KeyError(f"no guest {vmid}")
        return g

    def _node_name(self, name: str) -> str:
        if name not in self.cluster.nodes:
            raise KeyError(f"no node {name!r}")
        return name

    def set_node_online(self, name: str, online: bool) -> None:
        """Power a node on/off: offline nodes answer 595; /cluster/resources shows their
        guests' last sample for 5 minutes, then `unknown` (pmxcfs RRD expiry)."""
        with self.lock:
            t = self.cluster.sync()
            node = self.cluster.nodes[self._node_name(name)]
            if node.online.current == online:
                return
            node.online.set(t, online)
            if online:
                node.offline_since = None
                node.boot = t
            else:
                node.offline_since = t
                self.cluster.abort_moves_touching(name, t)
            self.cluster.ha.wake()

    def set_node_hastate(self, name: str, state: str) -> None:
        """HA node state, e.g. "maintenance" (what `ha-manager crm-command node-maintenance`
        does) or back to "online"; HA guests leave/return on the next CRM rounds."""
        if state not in HA_NODE_STATES:
            raise ValueError(f"state must be one of {', '.join(HA_NODE_STATES)}")
        with self.lock:
            self.cluster.sync()
            self.cluster.nodes[self._node_name(name)].hastate = state
            if not self.cluster.ha.configured:
                self.cluster.ha.start_rounds(self.cluster.time())
            self.cluster.ha.wake()

    def set_quorate(self, quorate: bool) -> None:
        with self.lock:
            self.cluster.sync()
            self.cluster.quorate = quorate
            self.cluster.ha.wake()

    def set_guest_cpu(self, vmid: int, cpu: float) -> None:
        """Constant cpu (share of the guest's own vCPUs) from now on, replacing its profile."""
        if cpu < 0:
            raise ValueError("cpu must not be negative")
        with self.lock:
            t = self.cluster.sync()
            self._guest(vmid).cpu_override.set(t, cpu)

    def set_guest_mem(self, vmid: int, mem: int) -> None:
        """Constant used memory (bytes) from now on, replacing its profile."""
        with self.lock:
            t = self.cluster.sync()
            g = self._guest(vmid)
            if not 0 <= mem <= g.spec.maxmem:
                raise ValueError(f"mem must be within 0..{g.spec.maxmem}")
            g.mem_override.set(t, mem)

    def set_guest_status(self, vmid: int, status: str) -> None:
        """Start ("running") or stop ("stopped") a guest instantly."""
        if status not in ("running", "stopped"):
            raise ValueError("status must be running or stopped")
        with self.lock:
            t = self.cluster.sync()
            g = self._guest(vmid)
            if g.status.current != status:
                g.status.set(t, status)
                if status == "running":
                    g.started = t
                svc = self.cluster.ha.service_of(g)
                if (svc is not None and svc.state not in ("disabled", "ignored")
                        and svc.crm_state in ("started", "stopped")):
                    svc.crm_state = "started" if status == "running" else "stopped"
                self.cluster.ha.wake()

    def set_guest_lock(self, vmid: int, lock: str | None) -> None:
        """Put a config lock (backup, snapshot, ...) on a guest, or clear it with None."""
        if lock is not None and lock not in GUEST_LOCKS:
            raise ValueError(f"lock must be one of {', '.join(GUEST_LOCKS)}")
        with self.lock:
            self.cluster.sync()
            self._guest(vmid).lock = lock

    def start_migration(
        self,
        vmid: int,
        target: str,
        user: str = "root@pam",
        online: bool | None = None,
        with_local_disks: bool = False,
    ) -> str:
        """Migrate like a human in the GUI would (same checks as the API); returns the UPID.

        HA guests yield a `hamigrate` UPID. Raises ApiError on synchronous refusals.
        """
        with self.lock:
            self.cluster.sync()
            g = self._guest(vmid)
            running = g.status.current == "running"
            live = running if online is None else online
            params: dict[str, Any] = {"target": target, "online": live}
            if g.type == "lxc":
                params = {"target": target, "restart": running}
            elif with_local_disks:
                params["with-local-disks"] = True
            return self.cluster.request_migrate(g.node.current, vmid, g.type, params, user)

    def fail_next_migration(self, vmid: int, message: str = "migration aborted",
                            phase: str | None = None) -> None:
        """The next migration task of this guest fails halfway: "migration aborted" fails
        phase 1 (that exit status); any other message is a phase 2 error of a live copy
        (logged as `online migrate failure - <message>`, exit status "migration problems").
        `phase="phase3"` fails after the VM moved (also "migration problems")."""
        if phase not in (None, "phase1", "phase2", "phase3"):
            raise ValueError(f"phase must be phase1, phase2 or phase3, not {phase!r}")
        with self.lock:
            self._guest(vmid)
            self.cluster.fail_next_migration(vmid, message, phase)

    def set_faults(
        self,
        error_rate: float = 0.0,
        latency_seconds: float = 0.0,
        error_status: int = 500,
        paths: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        message: str | None = None,
        truncate_rate: float = 0.0,
    ) -> None:
        """Random `error_status` answers (probability `error_rate`) and/or `latency_seconds` of
        real delay on requests whose API path matches one of the `paths` regexes (all if None);
        `truncate_rate`: 200 answers cut in half (truncated JSON)."""
        with self.lock:
            self.faults.configure(
                error_rate, latency_seconds, error_status, paths, methods, message,
                truncate_rate,
            )

    def clear_faults(self) -> None:
        self.set_faults()

    def set_cluster_options(self, **options: Any) -> None:
        """Set datacenter.cfg keys (use underscores for dashes); None removes a key.

        `crs` takes a mapping (ValueError if PVE's format rejects it) or the config line's
        string; a string PVE cannot parse (e.g. a bare "static") leaves `crs` out, as in PVE.
        """
        with self.lock:
            for key, value in options.items():
                key = key if key in _UNDERSCORE_OPTIONS else key.replace("_", "-")
                if value is None:
                    self.cluster.options.pop(key, None)
                elif key == "crs":
                    self._set_crs(value)
                else:
                    self.cluster.options[key] = int(value) if isinstance(value, bool) else value

    def _set_crs(self, value: Any) -> None:
        try:
            self.cluster.options["crs"] = parse_crs(value)
        except ValueError:
            if isinstance(value, Mapping):
                raise
            self.cluster.options.pop("crs", None)

    def set_option_crs(self, **crs: Any) -> None:
        """Merge keys into `crs` (e.g. ha="static", ha_auto_rebalance=True); ValueError if
        PVE's `crs` format rejects the result."""
        with self.lock:
            current = dict(self.cluster.options.get("crs", {}))
            for key, value in crs.items():
                key = key.replace("_", "-")
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self.cluster.options["crs"] = parse_crs(current)

    def set_token_privileges(self, sys_audit: bool) -> None:
        """Without Sys.Audit the token's /cluster/tasks is empty (PVE compares the split user
        with the token id), node task lists show its own tasks only, other tasks' status and
        log are 403, and HA endpoints 403."""
        with self.lock:
            self.cluster.sys_audit = sys_audit

    def set_cluster_tasks_lag(self, seconds: float) -> None:
        """Make `/cluster/tasks` show the state of `seconds` ago (pvestatd broadcast delay)."""
        with self.lock:
            self.cluster.cluster_tasks_lag = max(0.0, seconds)

    # ----- observation -------------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        with self.lock:
            return list(self.cluster.request_log)

    @property
    def migration_log(self) -> list[MigrationRecord]:
        """qmigrate, vzmigrate and hamigrate tasks (see `type`), oldest first."""
        with self.lock:
            self.cluster.sync()
            return [dataclasses.replace(r) for r in self.cluster.migration_log]

    @property
    def max_concurrent_migrations(self) -> int:
        """Most qmigrate/vzmigrate tasks running at the same time so far."""
        with self.lock:
            self.cluster.sync()
            return self.cluster.max_concurrent_migrations

    def running_migrations(self) -> int:
        with self.lock:
            self.cluster.sync()
            return self.cluster.running_moves()

    def reset_logs(self) -> None:
        """Forget request/migration logs and the concurrency peak (e.g. between bench phases)."""
        with self.lock:
            self.cluster.sync()
            self.cluster.request_log.clear()
            self.cluster.migration_log.clear()
            self.cluster.max_concurrent_migrations = self.cluster.running_moves()

    def guest(self, vmid: int) -> GuestInfo:
        with self.lock:
            t = self.cluster.sync()
            g = self._guest(vmid)
            m = self.cluster.guest_metrics(g, t)
            mig = g.migration
            return GuestInfo(
                vmid=vmid,
                name=g.spec.name,
                type=g.type,
                node=g.node.current,
                status=g.status.current if self.cluster.node_online(g.node.current) else "unknown",
                lock=g.lock,
                hastate=self.cluster.ha.guest_hastate(g),
                cpu=m.cpu,
                mem=m.mem,
                memhost=m.memhost,
                maxcpu=self.cluster.guest_maxcpu(g),
                maxmem=g.spec.maxmem,
                template=g.spec.template,
                tags=g.spec.tags,
                migrating_to=mig.target if mig is not None and not mig.done else None,
            )

    def guests(self) -> list[GuestInfo]:
        with self.lock:
            return [self.guest(vmid) for vmid in sorted(self.cluster.guests)]

    def node(self, name: str) -> NodeInfo:
        with self.lock:
            t = self.cluster.sync()
            name = self._node_name(name)
            vmids = [g.vmid for g in self.cluster.guests_on(name)]
            return self._node_info(name, t, vmids)

    def nodes(self) -> list[NodeInfo]:
        with self.lock:
            t = self.cluster.sync()
            placed: dict[str, list[int]] = {name: [] for name in self.cluster.nodes}
            for g in self.cluster.guests.values():  # one pass, not one per node
                placed[g.node.current].append(g.vmid)
            return [self._node_info(name, t, vmids) for name, vmids in placed.items()]

    def _node_info(self, name: str, t: float, vmids: list[int]) -> NodeInfo:
        node = self.cluster.nodes[name]
        demand, mem = self.cluster.node_load(name, t)
        return NodeInfo(
            name=name,
            online=node.online.current,
            hastate=self.cluster.ha.node_state(name),
            cpu=min(1.0, demand),
            cpu_demand=demand,
            mem=mem,
            maxcpu=node.spec.threads,
            maxmem=node.spec.memory,
            guests=tuple(sorted(vmids)),
        )

    def task(self, upid: str) -> TaskInfo:
        with self.lock:
            t = self.cluster.sync()
            task = self.cluster.tasks.get(upid)
            if task is None:
                raise KeyError(f"no task {upid}")
            return TaskInfo(
                upid=task.upid,
                node=task.node,
                type=task.type,
                id=task.id,
                user=task.authid,
                starttime=task.starttime,
                endtime=task.endtime,
                exitstatus=task.exitstatus,
                log=tuple(task.log_lines(t)),
            )

    def tasks(self, task_type: str | None = None) -> list[TaskInfo]:
        with self.lock:
            self.cluster.sync()
            upids = [u for u, task in self.cluster.tasks.items()
                     if task_type is None or task.type == task_type]
            return [self.task(u) for u in upids]

    def ha_log(self) -> list[tuple[float, str]]:
        """What the simulated CRM did or refused (time, message)."""
        with self.lock:
            self.cluster.sync()
            return list(self.cluster.ha.log)

    def call(self, method: str, path: str, **params: Any) -> Any:
        """Call an endpoint in-process (no HTTP, no auth, not logged); raises ApiError."""
        with self.lock:
            now = self.cluster.sync()
            found = find(method.upper(), path)
            if found is None:
                raise ApiError(501, f"Method '{method.upper()} {path}' not implemented")
            route, path_params = found
            raw = {
                k: ("1" if v is True else "0" if v is False else str(v))
                for k, v in params.items()
            }
            typed = validate(route.full_schema(), {**raw, **path_params})
            ctx = Ctx(authid=self.auth.token_id, now=now, privileged=True)
            return route.handler(self.cluster, ctx, typed)

    # ----- serving -----------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Start an HTTPS endpoint in a daemon thread (port 0 = any free port)."""
        server = SimServer(self.api, host, port)
        self._servers.append(server)
        return server

    def close(self) -> None:
        """Stop every server this simulator started."""
        for server in self._servers:
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
