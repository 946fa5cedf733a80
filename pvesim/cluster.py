"""The simulated cluster: nodes, guests, loads, tasks and migrations over simulated time.

Nothing runs in the background. Every reader first calls `sync()`, which fires the scheduled
events (task ends, HA rounds) that are due by `clock.now()`, in time order, each at its own
instant. Loads are pure functions of time, so any instant (now, or RRD history) is cheap to
evaluate. This class is not thread-safe; `Simulator` wraps it with one lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pvesim.clock import SimClock, Timeline
from pvesim.errors import internal, param_error
from pvesim.ha import HAManager
from pvesim.scenario import GuestSpec, NodeSpec, Scenario, StorageSpec
from pvesim.tasks import Task, format_upid
from pvesim.units import GIB, MIB

MOVE_TYPES = ("qmigrate", "vzmigrate")

#: pmxcfs forgets a node's RRD data (what /cluster/resources reports) this many seconds after
#: its last update (pve-cluster src/pmxcfs/status.c), so an offline node's stats go stale.
RRD_EXPIRY = 300.0

#: Past node loads are memoised only at multiples of this many seconds (every RRD sample time
#: is one: the hour timeframe samples every 20 s, the others at bucket ends)...
LOAD_CACHE_GRID = 20
#: ...and only for the last this many simulated seconds (the hour timeframe with room to
#: spare), so the memo stays a few hundred entries per node however long the run.
LOAD_CACHE_HORIZON = 2 * 3600.0


@dataclass
class NodeState:
    """A node's changing state; `hastate` is the HA node state requested (online/maintenance)."""

    spec: NodeSpec
    online: Timeline[bool]
    hastate: str
    boot: float
    offline_since: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Migration:
    """A running qmigrate/vzmigrate; the guest's memory counts on the target until `end`."""

    task: Task
    vmid: int
    source: str
    target: str
    start: float
    end: float
    error: str | None
    live: bool
    ha_driven: bool
    restart: bool
    #: Where it fails (pve-guest-common AbstractMigrate.pm `migrate`): "prepare" (nothing
    #: locked), "phase1" (locked, nothing moved; both end "migration aborted"), "phase2"
    #: (the live copy failed: "migration problems"); None when it succeeds.
    phase: str | None = None
    was_running: bool = False
    done: bool = False


@dataclass
class GuestState:
    """A guest's changing state (placement, run state, overrides, lock)."""

    spec: GuestSpec
    node: Timeline[str]
    status: Timeline[str]
    started: float
    pid: int
    lock: str | None = None
    cpu_override: Timeline[float | None] = field(default_factory=lambda: Timeline(None))
    mem_override: Timeline[int | None] = field(default_factory=lambda: Timeline(None))
    migration: Migration | None = None

    @property
    def vmid(self) -> int:
        return self.spec.vmid

    @property
    def type(self) -> str:
        return self.spec.type


@dataclass
class MigrationRecord:
    """One migration-related task as the observer sees it (`Simulator.migration_log`)."""

    upid: str
    vmid: int
    source: str
    target: str
    user: str
    type: str
    started: float
    ended: float | None = None
    exitstatus: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One API request (`Simulator.request_log`)."""

    sim_time: float
    real_time: float
    method: str
    path: str
    query: dict[str, str]
    data: dict[str, str]
    status: int
    user: str | None
    user_agent: str = ""


@dataclass(frozen=True)
class GuestMetrics:
    """A running guest's numbers at one instant (zeros when not running)."""

    cpu: float
    mem: int
    memhost: int
    uptime: int
    netin: int
    netout: int
    diskread: int
    diskwrite: int


def _mix(*values: int) -> int:
    """A small deterministic integer hash (stable across runs, unlike hash())."""
    x = 0x9E3779B9
    for v in values:
        x = ((x ^ (v & 0xFFFFFFFF)) * 0x45D9F3B) & 0xFFFFFFFF
        x ^= x >> 16
    return x


class Cluster:
    """All simulated state; see the module docstring for the time model."""

    def __init__(
        self, scenario: Scenario, speed: float = 1.0, seed: int = 0, start: float | None = None
    ) -> None:
        self.scenario = scenario
        self.clock = SimClock(speed, start)
        self.seed = seed
        self.rng = random.Random(seed)
        t0 = self.clock.start
        self.quorate = scenario.cluster.quorate
        self.options: dict[str, Any] = {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in scenario.options.items()
        }
        self.sys_audit = scenario.auth.sys_audit
        self.cluster_tasks_lag = scenario.cluster.cluster_tasks_lag
        self.storages: dict[str, StorageSpec] = {s.name: s for s in scenario.storages}
        self.nodes: dict[str, NodeState] = {}
        for spec in scenario.nodes:
            self.nodes[spec.name] = NodeState(
                spec=spec,
                online=Timeline(spec.online),
                hastate=spec.hastate,
                boot=t0 - spec.uptime,
                offline_since=None if spec.online else t0,
            )
        self.entry_node = scenario.cluster.entry_node or scenario.nodes[0].name
        self.guests: dict[int, GuestState] = {}
        # Guests ever placed on each node, later arrivals last: node_load sums in this order,
        # so it must not change as guests arrive (a set's can, when it grows, and the same
        # past instant would then add up differently in the last bit). Seeded in the order
        # the set this used to be iterates, so loads come out as they always have.
        ever_on: dict[str, set[int]] = {name: set() for name in self.nodes}
        for g in scenario.guests:
            self.guests[g.vmid] = GuestState(
                spec=g,
                node=Timeline(g.node),
                status=Timeline(g.status),
                started=t0 - g.uptime,
                pid=self.rng.randint(2_000, 4_000_000),
                lock=g.lock,
            )
            ever_on[g.node].add(g.vmid)
        self._ever_on: dict[str, dict[int, None]] = {
            name: dict.fromkeys(vmids) for name, vmids in ever_on.items()
        }
        self.tasks: dict[str, Task] = {}
        self.node_tasks: dict[str, list[Task]] = {name: [] for name in self.nodes}
        self.migrations: dict[str, Migration] = {}
        self._incoming: dict[str, list[Migration]] = {name: [] for name in self.nodes}
        self._fail_next: dict[int, tuple[str, str | None]] = {}
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._event_time: float | None = None
        # Every event due by this instant has fired (the last sync's now), and nothing can
        # change the cluster before it any more: see node_load.
        self._settled = -math.inf
        self._load_memo: dict[str, dict[float, tuple[float, int]]] = {
            name: {} for name in self.nodes
        }
        self._memo_pruned = -math.inf
        self.request_log: list[RequestRecord] = []
        self.migration_log: list[MigrationRecord] = []
        self._records: dict[str, MigrationRecord] = {}
        self.max_concurrent_migrations = 0
        self.ha = HAManager(self)

    # ----- time and events -------------------------------------------------------------

    def time(self) -> float:
        """The current instant: the firing event's time while events run, else the clock."""
        return self._event_time if self._event_time is not None else self.clock.now()

    def schedule(self, t: float, action: Callable[[float], None]) -> None:
        if t < self._settled:
            # Never happens (delays are >= 0), but an event in the past could change loads
            # already memoised: forget those from its instant on rather than serve them stale.
            for memo in self._load_memo.values():
                for stale in [when for when in memo if when >= t]:
                    del memo[stale]
        heapq.heappush(self._events, (t, next(self._seq), action))

    def sync(self) -> float:
        """Fire every event due by now (in time order); return now."""
        now = self.clock.now()
        while self._events and self._events[0][0] <= now:
            t, _, action = heapq.heappop(self._events)
            self._event_time = t
            try:
                action(t)
            finally:
                self._event_time = None
        self._settled = max(self._settled, now)
        return now

    # ----- loads -----------------------------------------------------------------------

    def _jitter(self, vmid: int, t: float, salt: int) -> float:
        """Deterministic noise in [-1, 1] that changes every 10 s (pvestatd's cadence), counted
        from the scenario's start: the same seed gives the same loads at the same simulated
        second in every run (the benchmark's lower bound reads the loads a run sees)."""
        step = int((t - self.clock.start) // 10)
        return (_mix(self.seed, vmid, salt, step) % 20001) / 10000.0 - 1.0

    def node_online(self, name: str, t: float | None = None) -> bool:
        node = self.nodes[name]
        return node.online.current if t is None else node.online.at(t)

    def stats_sample_time(self, name: str) -> float | None:
        """When the stats /cluster/resources shows now for a node (and its guests) were
        taken: now while it is online; for RRD_EXPIRY seconds after it went down, just before
        (pmxcfs still holds the last broadcast); then never. A node offline from the start
        counts as gone long ago."""
        node = self.nodes[name]
        now = self.time()
        if node.online.current:
            return now
        since = node.offline_since
        if since is None or now - since >= RRD_EXPIRY:
            return None
        before = since - 1e-3
        return before if node.online.at(before) else None

    def guest_running(self, g: GuestState, t: float) -> bool:
        return g.status.at(t) == "running" and self.nodes[g.node.at(t)].online.at(t)

    def guest_cpu(self, g: GuestState, t: float, noise: bool = True) -> float:
        """Share of the guest's own vCPUs in use (may exceed 1, like PVE's vmstatus). Without
        `noise`, the sustained load the jitter varies around (the benchmark's lower bound)."""
        if not self.guest_running(g, t):
            return 0.0
        return self._running_cpu(g, t, noise)

    def _running_cpu(self, g: GuestState, t: float, noise: bool = True) -> float:
        """guest_cpu for a guest known to be running at `t`."""
        value = g.cpu_override.at(t)
        if value is None:
            profiled = g.spec.profile.cpu(t - self.clock.start)
            value = g.spec.cpu if profiled is None else profiled
        if g.spec.noise and noise:
            value *= 1.0 + g.spec.noise * self._jitter(g.vmid, t, 1)
        return max(0.0, value)

    def guest_mem(self, g: GuestState, t: float, noise: bool = True) -> tuple[int, int]:
        """(mem, memhost) in bytes; memhost keeps the scenario's host-side overhead."""
        if not self.guest_running(g, t):
            return 0, 0
        return self._running_mem(g, t, noise)

    def _running_mem(self, g: GuestState, t: float, noise: bool = True) -> tuple[int, int]:
        """guest_mem for a guest known to be running at `t`."""
        value = g.mem_override.at(t)
        if value is None:
            profiled = g.spec.profile.mem(t - self.clock.start)
            value = g.spec.mem if profiled is None else profiled
        if g.spec.noise and noise:
            value = int(value * (1.0 + g.spec.noise * 0.5 * self._jitter(g.vmid, t, 2)))
        mem = max(0, min(int(value), g.spec.maxmem))
        if g.type != "qemu":
            return mem, mem
        return mem, max(0, mem + g.spec.memhost - g.spec.mem)

    def guest_maxcpu(self, g: GuestState) -> float:
        """The guest's `maxcpu` on the node it is on now (see GuestSpec.maxcpu)."""
        return g.spec.maxcpu(self.nodes[g.node.current].spec.threads)

    def guest_metrics(self, g: GuestState, t: float) -> GuestMetrics:
        if not self.guest_running(g, t):
            return GuestMetrics(0.0, 0, 0, 0, 0, 0, 0, 0)
        mem, memhost = self.guest_mem(g, t)
        uptime = max(0, int(t - g.started))
        rate = g.spec.net_rate
        return GuestMetrics(
            cpu=self.guest_cpu(g, t),
            mem=mem,
            memhost=memhost,
            uptime=uptime,
            netin=int(uptime * rate),
            netout=int(uptime * rate * 0.6),
            diskread=int(uptime * rate * 2.5),
            diskwrite=int(uptime * rate * 1.5),
        )

    def node_load(self, name: str, t: float, noise: bool = True) -> tuple[float, int]:
        """(cpu demand as a fraction of threads, unclamped; used memory bytes) at `t`; without
        `noise`, the sustained load the guests' jitter varies around (not memoised).

        Loads before `_settled` are memoised (on the LOAD_CACHE_GRID, within
        LOAD_CACHE_HORIZON), which makes per-guest RRD history O(samples) instead of
        O(samples x guests on the node). That is sound because the past is immutable: every
        change happens at an instant >= `_settled` and only affects that instant onwards.
        Events fire in time order at their own instant and are scheduled at or after the
        instant that schedules them (`schedule` invalidates if not); steering and API calls
        act at the clock's now, never before the last sync; `Timeline.set(t, v)` changes only
        what `at()` answers from `t` on; a migration joins `_incoming` at its start, and
        `_end_move` only shortens its `end` to the completion instant; `_ever_on` only gains
        guests that arrive from then on; specs and profiles are immutable. So a memoised
        load is exactly what recomputing it would give (tests/test_pvesim_ha.py checks).
        """
        if not noise:
            return self._node_load(name, t, noise=False)
        if t < self._settled and t % LOAD_CACHE_GRID == 0:
            memo = self._load_memo[name]
            load = memo.get(t)
            if load is None:
                if t < self._settled - LOAD_CACHE_HORIZON:
                    return self._node_load(name, t)
                load = memo[t] = self._node_load(name, t)
                self._prune_load_memo()
            return load
        return self._node_load(name, t)

    def _prune_load_memo(self) -> None:
        """Drop memoised loads that slid out of the horizon (at most every few minutes)."""
        if self._settled - self._memo_pruned < LOAD_CACHE_HORIZON / 16:
            return
        self._memo_pruned = self._settled
        oldest = self._settled - LOAD_CACHE_HORIZON
        for name, memo in self._load_memo.items():
            if memo and min(memo) < oldest:
                self._load_memo[name] = {t: v for t, v in memo.items() if t >= oldest}

    def _node_load(self, name: str, t: float, noise: bool = True) -> tuple[float, int]:
        node = self.nodes[name]
        spec = node.spec
        if not node.online.at(t):
            return 0.0, 0
        threads = spec.threads
        demand = spec.base_cpu
        mem = spec.base_mem
        guests = self.guests
        for vmid in self._ever_on[name]:
            g = guests[vmid]
            if g.node.at(t) != name or g.status.at(t) != "running":
                continue
            # node online, guest here and running: guest_cpu/guest_mem without re-checking
            # PVE's guest cpu is a share of its maxcpu (vmstatus), so this many threads
            demand += self._running_cpu(g, t, noise) * g.spec.maxcpu(threads) / threads
            mem += self._running_mem(g, t, noise)[1]
        for mig in self._incoming[name]:
            if mig.live and mig.start <= t < mig.end:
                mem += self.guest_mem(guests[mig.vmid], t, noise)[1]
        return demand, min(mem, spec.memory)

    def all_node_loads(self, t: float) -> dict[str, tuple[float, int]]:
        return {name: self.node_load(name, t) for name in self.nodes}

    def guests_on(self, name: str) -> list[GuestState]:
        return [g for g in self.guests.values() if g.node.current == name]

    # ----- tasks -----------------------------------------------------------------------

    def new_task(self, node: str, task_type: str, task_id: str, authid: str, t: float) -> Task:
        boot = self.nodes[node].boot
        pid = self.rng.randint(2_000, 4_000_000)
        pstart = max(1, int((t - boot) * 100))
        upid = format_upid(node, pid, pstart, int(t), task_type, task_id, authid)
        task = Task(upid, node, pid, pstart, int(t), task_type, task_id, authid, started=t)
        self.tasks[upid] = task
        self.node_tasks[node].append(task)
        return task

    def _record(self, task: Task, vmid: int, source: str, target: str) -> MigrationRecord:
        record = MigrationRecord(
            upid=task.upid,
            vmid=vmid,
            source=source,
            target=target,
            user=task.authid,
            type=task.type,
            started=task.started,
        )
        self.migration_log.append(record)
        self._records[task.upid] = record
        return record

    def _finish_task(self, task: Task, t: float, exitstatus: str) -> None:
        task.finish(t, exitstatus)
        record = self._records.get(task.upid)
        if record is not None:
            record.ended = t
            record.exitstatus = exitstatus

    def running_moves(self) -> int:
        return sum(1 for m in self.migrations.values() if not m.done)

    # ----- migration requests (the API's POST .../migrate) ------------------------------

    def check_quorum(self) -> None:
        if not self.quorate:
            raise internal("cluster not ready - no quorum?")

    def check_target_node(self, node: str, target: str) -> None:
        if target == node:
            raise param_error({"target": "target is local node."})
        self.check_quorum()
        if target not in self.nodes:
            raise internal(f"no such cluster node '{target}'")

    def load_guest(self, node: str, vmid: int, gtype: str) -> GuestState:
        """The guest if its config is on `node` with that type; else PVE's 'does not exist'."""
        g = self.guests.get(vmid)
        if g is None or g.type != gtype or g.node.current != node:
            folder = "qemu-server" if gtype == "qemu" else "lxc"
            raise internal(f"Configuration file 'nodes/{node}/{folder}/{vmid}.conf' does not exist")
        return g

    def local_volumes(self, g: GuestState) -> list[tuple[str, str, int, bool]]:
        """(drive key, volid, size, is_cdrom) of the volumes qemu-server's
        `$check_vm_disks_local` lists: on non-shared storage, or the host's `cdrom` drive."""
        result = []
        for disk in g.spec.disks:
            if disk.storage is None:
                if disk.cdrom and disk.volid == "cdrom":
                    result.append((disk.key, disk.volid, disk.size, True))
                continue
            if not self.storages[disk.storage].shared:
                result.append((disk.key, disk.volid, disk.size, disk.cdrom))
        return result

    def unavailable_storages(self, g: GuestState, target: str) -> list[str]:
        """Storages of the guest's drives, ISO images included, not enabled on `target`
        (QemuServer.pm `check_local_storage_availability`/`check_storage_availability`)."""
        return sorted({
            d.storage for d in g.spec.disks
            if d.storage is not None and not self.storages[d.storage].available_on(target)
        })

    def local_resources(
        self, g: GuestState, running: bool
    ) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """(local_resources, mapped-resource-info) as qemu-server QemuMigrate/Helpers.pm
        `check_local_resources` finds them: raw passthrough always; mapped usb always; a
        mapped hostpci only while running (no mapping here is `live-migration-capable`)."""
        local: list[str] = []
        mapped: dict[str, dict[str, Any]] = {}
        for i, value in enumerate(g.spec.hostpci):
            key = f"hostpci{i}"
            name = _mapping_name(value)
            if name is not None:
                mapped[key] = {"name": name}
                if not running:
                    continue
            local.append(key)
        for i, value in enumerate(g.spec.usb):
            key = f"usb{i}"
            if value.lower() in ("spice", "host=spice"):
                continue
            name = _mapping_name(value)
            if name is not None:
                mapped[key] = {"name": name}
            local.append(key)
        return local, mapped

    def request_migrate(
        self, node: str, vmid: int, gtype: str, params: dict[str, Any], authid: str
    ) -> str:
        """POST /nodes/{node}/{qemu|lxc}/{vmid}/migrate: synchronous checks, then a task UPID."""
        t = self.time()
        target = str(params["target"])
        if gtype == "qemu":
            self.check_target_node(node, target)
            for option in ("force", "migration_type", "migration_network"):
                if params.get(option) and authid != "root@pam":
                    raise param_error({option: "Only root may use this option."})
            g = self.load_guest(node, vmid, gtype)
            if g.lock:
                raise internal(f"VM is locked ({g.lock})")
            running = g.status.current == "running"
            if running and not params.get("online"):
                raise internal("can't migrate running VM without --online")
            if not params.get("targetstorage"):
                for store in self.unavailable_storages(g, target):
                    raise internal(f"storage '{store}' is not available on node '{target}'")
        else:
            self.check_target_node(node, target)
            g = self.load_guest(node, vmid, gtype)
            running = g.status.current == "running"
            if running and not params.get("online") and not params.get("restart"):
                raise internal("can't migrate running container without --online or --restart")
        if self.ha.manages(g):
            return self.ha.request_hamigrate(g, node, target, authid, t).upid
        task = self.start_move(
            g,
            target,
            authid,
            t,
            online=bool(params.get("online")),
            with_local_disks=bool(params.get("with-local-disks")),
            bwlimit=params.get("bwlimit"),
            restart=bool(params.get("restart")),
            force=bool(params.get("force")),
        )
        return task.upid

    # ----- migration execution ---------------------------------------------------------

    def _prepare_failure(
        self, g: GuestState, target: str, online: bool, restart: bool, force: bool
    ) -> str | None:
        """Why the worker's prepare step dies, before anything is locked (qemu-server
        QemuMigrate.pm / pve-container LXC/Migrate.pm `prepare`), in their order."""
        running = g.status.current == "running"
        if g.type == "lxc":
            if g.lock:
                return f"CT is locked ({g.lock})"
            if running and online and not restart:
                return "lxc live migration is currently not implemented"
        else:
            local, mapped = self.local_resources(g, running)
            blocking = [key for key in local if key not in mapped]
            # `$self->{running}` is still 0 in prepare, so force lets even a running VM pass
            if blocking and not force:
                return f"can't migrate VM which uses local devices: {', '.join(blocking)}"
            not_live = [f"{k}:{v['name']}" for k, v in sorted(mapped.items())
                        if not v.get("live-migration")]
            if running and not_live:
                return ("can't live migrate running VM which uses following mapped devices: "
                        + ", ".join(not_live))
            for store in self.unavailable_storages(g, target):
                return f"storage '{store}' is not available on node '{target}'"
        if not self.node_online(target):
            return "Can't connect to destination address using public key"
        return None

    def _scan_volumes(
        self, g: GuestState, running: bool, with_local_disks: bool
    ) -> tuple[list[str], list[str]]:
        """(log lines, errors) of phase 1's QemuMigrate.pm `scan_local_volumes`: the host
        cdrom and local ISO images never migrate; attached local disks of a running VM need
        with-local-disks. Any error aborts the migration after the lock was taken."""
        lines: list[str] = []
        errors: list[str] = []
        other: list[str] = []
        for _key, volid, _size, cdrom in sorted(self.local_volumes(g), key=lambda v: v[1]):
            if volid == "cdrom":
                other.append("can't migrate local cdrom drive")
                continue
            lines.append(f"found local disk '{volid}' (attached)")
            if running and not with_local_disks:
                problem = "can't live migrate attached local disks without with-local-disks option"
            elif cdrom:
                problem = "local cdrom image"
            else:
                continue
            errors.append(f"can't migrate local disk '{volid}': {problem}")
        errors.extend(other)
        return lines, errors

    def _duration(
        self, g: GuestState, t: float, with_local_disks: bool, bwlimit: int | None, restart: bool
    ) -> tuple[float, bool, int]:
        """(simulated seconds, is live, bytes moved) for a migration starting now."""
        spec = self.scenario.migration
        running = g.status.current == "running"
        live = running and g.type == "qemu"
        mem_bytes = self.guest_mem(g, t)[1] if live else 0
        local_bytes = sum(size for _k, _v, size, cdrom in self.local_volumes(g) if not cdrom)
        copy_disks = local_bytes and (not running or with_local_disks or g.type == "lxc")
        seconds = 1.0 + mem_bytes / GIB * spec.seconds_per_gib
        moved = mem_bytes
        if copy_disks:
            seconds += local_bytes / GIB * spec.disk_seconds_per_gib
            moved += local_bytes
        if g.type == "lxc" and running and restart:
            seconds += spec.lxc_restart_seconds
        if bwlimit:
            seconds = max(seconds, moved / (bwlimit * 1024.0))
        return max(spec.min_seconds, seconds), live, moved

    def start_move(
        self,
        g: GuestState,
        target: str,
        authid: str,
        t: float,
        *,
        online: bool,
        with_local_disks: bool = False,
        bwlimit: int | None = None,
        restart: bool = False,
        force: bool = False,
        ha_driven: bool = False,
    ) -> Task:
        """Fork the qmigrate/vzmigrate worker: it fails in prepare (nothing locked), in phase 1
        (locked, nothing moved), in phase 2 (the live copy), or moves the guest."""
        source = g.node.current
        task_type = "qmigrate" if g.type == "qemu" else "vzmigrate"
        task = self.new_task(source, task_type, str(g.vmid), authid, t)
        self._record(task, g.vmid, source, target)
        running = g.status.current == "running"
        if running and g.type == "qemu":
            task.add_log(t, "conntrack state migration not supported or disabled, active "
                         "connections might get dropped")
        reason = self._prepare_failure(g, target, online, restart, force)
        if reason is not None:
            mig = Migration(task, g.vmid, source, target, t,
                            t + self.scenario.migration.abort_seconds, reason, False,
                            ha_driven, restart, phase="prepare")
        else:
            mig = self._begin_move(g, task, target, t, running, with_local_disks, bwlimit,
                                   restart, force, ha_driven)
        self.migrations[task.upid] = mig
        self.max_concurrent_migrations = max(self.max_concurrent_migrations, self.running_moves())
        self.schedule(mig.end, lambda when: self._complete(mig, when))
        return task

    def _begin_move(
        self, g: GuestState, task: Task, target: str, t: float, running: bool,
        with_local_disks: bool, bwlimit: int | None, restart: bool, force: bool,
        ha_driven: bool,
    ) -> Migration:
        """Phase 1 onwards: lock the guest, scan its volumes, copy; decide how it ends."""
        source = g.node.current
        scan_lines: list[str] = []
        scan_errors: list[str] = []
        if g.type == "qemu":
            scan_lines, scan_errors = self._scan_volumes(g, running, with_local_disks)
        if scan_errors:
            end = t + self.scenario.migration.abort_seconds
            mig = Migration(task, g.vmid, source, target, t, end,
                            "Problem found while scanning volumes - can't migrate VM - check log",
                            False, ha_driven, restart, phase="phase1", was_running=running)
            seconds, live, moved = end - t, False, 0
        else:
            seconds, live, moved = self._duration(g, t, with_local_disks, bwlimit, restart)
            error, phase = self._fail_next.pop(g.vmid, (None, None))
            local = self.local_resources(g, running)[0] if g.type == "qemu" else []
            if error is None and live and force and local:
                # Sim's wording for QEMU refusing to migrate passed-through devices.
                error = f"VM uses devices that cannot be live-migrated: {', '.join(local)}"
            if error is not None and phase is None:
                phase = "phase2" if live and error != "migration aborted" else "phase1"
            end = t + (seconds * 0.5 if error else seconds)
            mig = Migration(task, g.vmid, source, target, t, end, error, live, ha_driven,
                            restart, phase=phase, was_running=running)
        g.lock = "migrate"
        g.migration = mig
        if live:
            self._incoming[target].append(mig)
        if g.type == "lxc" and restart and running:
            g.status.set(t, "stopped")
        if force and g.type == "qemu" and self.local_resources(g, running)[0]:
            task.add_log(t, "migrating VM which uses local devices")
        self._write_move_log(g, mig, seconds, moved, scan_lines + scan_errors)
        return mig

    def _write_move_log(
        self, g: GuestState, mig: Migration, seconds: float, moved: int, scan: list[str]
    ) -> None:
        task, t = mig.task, mig.start
        kind = "VM" if g.type == "qemu" else "CT"
        ip = self.nodes[mig.target].spec.ip
        if g.type == "lxc" and mig.restart and mig.was_running:
            task.add_log(t, f"shutdown CT {g.vmid}")
        task.add_log(t, f"starting migration of {kind} {g.vmid} to node '{mig.target}' ({ip})")
        for line in scan:
            task.add_log(t, line)
        if mig.phase == "phase1" and scan:
            return
        if mig.live:
            total = self.guest_mem(g, t)[1]
            task.add_log(t + 0.3, f"starting VM {g.vmid} on remote node '{mig.target}'")
            task.add_log(t + 0.6, "start remote tunnel")
            task.add_log(t + 0.6, "ssh tunnel ver 1")
            sock = f"unix:/run/qemu-server/{g.vmid}.migrate"
            task.add_log(t + 0.7, f"starting online/live migration on {sock}")
            task.add_log(t + 0.7, "set migration capabilities")
            task.add_log(t + 0.7, "migration downtime limit: 100 ms")
            task.add_log(t + 0.7, f"start migrate command to {sock}")
            steps = max(1, min(10, int(seconds) - 1))
            for i in range(1, steps + 1):
                at = t + 1.0 + (seconds - 1.2) * i / (steps + 1)
                done = total * i / (steps + 1)
                speed = total / max(seconds, 1) / MIB
                task.add_log(
                    at,
                    f"migration active, transferred {done / GIB:.1f} GiB of "
                    f"{g.spec.maxmem / GIB:.1f} GiB VM-state, {speed:.1f} MiB/s",
                )
            rate = moved / max(seconds, 1) / MIB
            task.add_log(
                mig.end - 0.1, f"average migration speed: {rate:.1f} MiB/s - downtime 57 ms"
            )
            task.add_log(mig.end - 0.1, "migration status: completed")
        elif g.type == "lxc":
            for disk in g.spec.disks:
                if disk.storage and self.storages[disk.storage].shared:
                    line = f"volume '{disk.volid}' is on shared storage '{disk.storage}'"
                    task.add_log(t + 0.5, line)
            task.add_log(mig.end - 0.2, "start final cleanup")
            if mig.restart:
                task.add_log(mig.end - 0.1, "start container on target node")

    def _complete(self, mig: Migration, t: float) -> None:
        """End the worker as pve-guest-common AbstractMigrate.pm `migrate` does."""
        if mig.done:
            return
        mig.done = True
        g = self.guests[mig.vmid]
        task = mig.task
        duration = _duration_text(t - mig.start)
        if mig.phase == "prepare":
            task.add_log(t, f"ERROR: migration aborted (duration {duration}): {mig.error}")
            self._finish_task(task, t, "migration aborted")
        elif mig.phase == "phase1":
            task.add_log(t, f"ERROR: {mig.error}")
            task.add_log(t, "aborting phase 1 - cleanup resources")
            task.add_log(t, f"ERROR: migration aborted (duration {duration}): {mig.error}")
            self._end_move(g, mig, t, moved=False)
            self._finish_task(task, t, "migration aborted")
        elif mig.phase == "phase3":
            # The VM runs on the target; finalizing failed (AbstractMigrate.pm `migrate`).
            task.add_log(t, f"ERROR: {mig.error}")
            task.add_log(t, f"ERROR: migration finished with problems (duration {duration})")
            self._end_move(g, mig, t, moved=True)
            self._finish_task(task, t, "migration problems")
        elif mig.phase == "phase2":
            task.add_log(t, f"ERROR: online migrate failure - {mig.error}")
            task.add_log(t, "aborting phase 2 - cleanup resources")
            task.add_log(t, "migrate_cancel")
            task.add_log(t, f"ERROR: migration finished with problems (duration {duration})")
            self._end_move(g, mig, t, moved=False)
            self._finish_task(task, t, "migration problems")
        else:
            task.add_log(t, f"migration finished successfully (duration {duration})")
            self._end_move(g, mig, t, moved=True)
            self._finish_task(task, t, "OK")
        self.ha.on_move_finished(g, mig, t, success=mig.phase is None)

    def _end_move(self, g: GuestState, mig: Migration, t: float, moved: bool) -> None:
        g.lock = None
        g.migration = None
        mig.end = min(mig.end, t)
        if moved:
            g.node.set(t, mig.target)
            self._ever_on[mig.target][g.vmid] = None
        if g.type == "lxc" and mig.restart and mig.was_running:
            g.status.set(t, "running")
            g.started = t

    def abort_moves_touching(self, node: str, t: float) -> None:
        """A node went away: migrations from or to it fail now; a live copy losing its
        target fails in phase 2 ("migration problems"), anything else in phase 1."""
        for mig in list(self.migrations.values()):
            if mig.done or node not in (mig.source, mig.target):
                continue
            if mig.phase != "prepare":
                mig.error = mig.error or f"lost connection to node '{node}'"
                mig.phase = "phase2" if mig.live and node == mig.target else "phase1"
            self._complete(mig, t)

    def fail_next_migration(self, vmid: int, message: str, phase: str | None = None) -> None:
        """The guest's next migration fails halfway: "migration aborted" in phase 1, any
        other message as a phase 2 error of a live migration (task: "migration problems");
        `phase="phase3"`: after the VM moved, while finalizing ("migration problems" too)."""
        self._fail_next[vmid] = (message, phase)

    def recover_guest(self, g: GuestState, target: str, t: float) -> None:
        """HA recovery after fencing: the guest restarts on `target` (no migration task)."""
        g.node.set(t, target)
        self._ever_on[target][g.vmid] = None
        g.lock = None
        if g.status.current == "running":
            g.started = t


def _mapping_name(value: str) -> str | None:
    """The `mapping=` of a hostpci/usb property string, if any."""
    for part in value.split(","):
        key, sep, name = part.partition("=")
        if sep and key == "mapping":
            return name
    return None


def _duration_text(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
