"""Scenario files: the starting cluster a simulator runs (nodes, storages, guests, HA, options).

A scenario is YAML or JSON (or an equivalent dict). Loading validates everything up front and
reports every problem at once, each with its location, so a typo fails loudly instead of
producing a quietly different cluster. See pvesim/README.md for the format.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pvesim.profile import LoadProfile, parse_profile
from pvesim.units import GIB, MIB, pick_size, size_keys

NODE_NAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
HA_NODE_STATES = ("online", "maintenance", "unknown", "fence", "gone")
HA_RESOURCE_STATES = ("started", "stopped", "disabled", "ignored")
GUEST_LOCKS = (
    "backup",
    "clone",
    "create",
    "migrate",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
    "mounted",
    "disk",
    "destroyed",
    "fstrim",
)
DEFAULT_TOKEN_VALUE = "00000000-0000-4000-8000-000000000000"


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; the message lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid scenario:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class NodeSpec:
    """One cluster member as it is at simulation start."""

    name: str
    threads: int
    cores: int
    sockets: int
    memory: int
    online: bool = True
    hastate: str = "online"
    base_cpu: float = 0.02
    base_mem: int = 2 * GIB
    ip: str = ""
    nodeid: int = 0
    rootfs: int = 100 * GIB
    rootfs_used: int = 8 * GIB
    uptime: int = 1_000_000
    swap: int = 8 * GIB
    cpu_model: str = "AMD EPYC 7543P 32-Core Processor"
    mhz: float = 2800.0


@dataclass(frozen=True)
class StorageSpec:
    """A storage definition; `shared` decides whether disks on it need copying on migration."""

    name: str
    type: str
    shared: bool
    size: int
    content: str
    nodes: tuple[str, ...] | None = None

    def available_on(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes


@dataclass(frozen=True)
class DiskSpec:
    """A guest volume or CD-ROM drive, keyed like in the guest config (scsi0, ide2, rootfs)."""

    key: str
    storage: str | None
    size: int
    volid: str
    cdrom: bool = False


@dataclass(frozen=True)
class HAResourceSpec:
    """The guest's HA resource entry (`/cluster/ha/resources`); absent means not HA-managed."""

    state: str = "started"
    failback: bool = True
    max_restart: int | None = None
    max_relocate: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class GuestSpec:
    """A VM or container; cpu is a share of its own `maxcpu`, memory values are bytes.

    `cpus` is the nominal vCPU count (qemu: vcpus or sockets x cores; lxc: cores, else
    cpulimit rounded up, else the node's threads). For lxc, `cores` is the config's `cores`
    line (0: none) and `cpulimit` its `cpulimit` (0: none).
    """

    vmid: int
    name: str
    type: str
    node: str
    status: str
    cpus: int
    sockets: int
    cores: int
    maxmem: int
    cpu: float
    mem: int
    memhost: int
    template: bool = False
    tags: tuple[str, ...] = ()
    lock: str | None = None
    pool: str | None = None
    ha: HAResourceSpec | None = None
    disks: tuple[DiskSpec, ...] = ()
    hostpci: tuple[str, ...] = ()
    usb: tuple[str, ...] = ()
    profile: LoadProfile = field(default_factory=LoadProfile)
    noise: float = 0.0
    uptime: int = 86_400
    net_rate: float = 20_000.0
    swap: int = 512 * MIB
    cpulimit: float = 0

    @property
    def sid(self) -> str:
        return f"{'vm' if self.type == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def vcpus(self) -> int | None:
        """The qemu config's `vcpus` line: written when the vCPUs differ from the topology."""
        if self.type != "qemu" or self.cpus == self.sockets * self.cores:
            return None
        return self.cpus

    def maxcpu(self, threads: int) -> float:
        """`maxcpu` on a node with `threads` host threads, as PVE's vmstatus computes it:
        qemu-server QemuServer.pm `vmstatus` caps sockets x cores at the host's threads, then
        `vcpus` overrides; pve-container LXC.pm `vmstatus` takes `cores || cpulimit`, else the
        host's threads (uncapped, and fractional with a cpulimit like 1.5)."""
        if self.type == "qemu":
            return self.vcpus or min(self.sockets * self.cores, threads)
        return self.cores or self.cpulimit or threads


@dataclass(frozen=True)
class HARuleSpec:
    """A PVE 9 HA rule: node-affinity (nodes with priorities) or resource-affinity."""

    rule: str
    type: str
    resources: tuple[str, ...]
    order: int
    nodes: tuple[tuple[str, int], ...] = ()
    strict: bool = False
    affinity: str | None = None
    disable: bool = False
    comment: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    """Cluster-wide identity and state."""

    name: str = "pvesim"
    quorate: bool = True
    version: str = "9.0.3"
    release: str = "9.0"
    repoid: str = "025864202ebb6109"
    config_version: int = 5
    entry_node: str | None = None
    cluster_tasks_lag: float = 0.0


@dataclass(frozen=True)
class AuthSpec:
    """The one API token (and optional password) the fake accepts."""

    user: str = "balancer@pve"
    token_name: str = "balancer"
    token_value: str = DEFAULT_TOKEN_VALUE
    password: str | None = None
    sys_audit: bool = True
    failure_delay: float = 0.0

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"


@dataclass(frozen=True)
class MigrationSpec:
    """How long simulated work takes, in simulated seconds."""

    seconds_per_gib: float = 2.0
    min_seconds: float = 3.0
    disk_seconds_per_gib: float = 5.0
    lxc_restart_seconds: float = 6.0
    hamigrate_seconds: float = 1.0
    abort_seconds: float = 1.5


@dataclass(frozen=True)
class HASettings:
    """Timing of the simulated HA stack (CRM rounds, LRM start delay, fencing)."""

    crm_interval: float = 5.0
    lrm_delay: float = 1.0
    max_workers: int = 4
    fence_delay: float = 60.0


@dataclass(frozen=True)
class Scenario:
    """A validated scenario; build it with load_scenario()."""

    cluster: ClusterSpec
    auth: AuthSpec
    options: Mapping[str, Any]
    migration: MigrationSpec
    ha_settings: HASettings
    nodes: tuple[NodeSpec, ...]
    storages: tuple[StorageSpec, ...]
    guests: tuple[GuestSpec, ...]
    ha_rules: tuple[HARuleSpec, ...]
    pools: Mapping[str, str]

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


_Section = TypeVar("_Section")


class _Fields:
    """Typed access to one mapping of a scenario that records problems instead of raising."""

    def __init__(self, data: object, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        self.used: set[str] = set()
        if isinstance(data, Mapping):
            self.data: Mapping[str, Any] = data
        else:
            self.data = {}
            problems.append(f"{where}: expected a mapping, got {type(data).__name__}")

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None, choices: Sequence[str] = ()) -> str | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(f"'{key}' must be a string, got {value!r}")
            return default
        text = str(value)
        if choices and text not in choices:
            self.problem(f"'{key}' must be one of {', '.join(choices)}, got {text!r}")
            return default
        return text

    def required_str(self, key: str, choices: Sequence[str] = ()) -> str:
        if key not in self.data:
            self.problem(f"'{key}' is required")
            self.used.add(key)
            return ""
        return self.text(key, "", choices) or ""

    def integer(self, key: str, default: int, minimum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(f"'{key}' must be an integer, got {value!r}")
            return default
        if minimum is not None and value < minimum:
            self.problem(f"'{key}' must be >= {minimum}, got {value}")
            return default
        return value

    def number(self, key: str, default: float, minimum: float | None = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(f"'{key}' must be a number, got {value!r}")
            return default
        if minimum is not None and value < minimum:
            self.problem(f"'{key}' must be >= {minimum}, got {value}")
            return default
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        self.problem(f"'{key}' must be true/false (or 1/0), got {value!r}")
        return default

    def section(self, cls: type[_Section], minimum: Mapping[str, float] = {}) -> _Section:
        """A flat section read by its dataclass: each field's default and type (bool, int,
        float, text) are declared there once, not repeated here."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            default: Any = f.default
            low = minimum.get(f.name)
            if isinstance(default, bool):
                values[f.name] = self.flag(f.name, default)
            elif isinstance(default, int):
                values[f.name] = self.integer(f.name, default,
                                              None if low is None else int(low))
            elif isinstance(default, float):
                values[f.name] = self.number(f.name, default, 0.0 if low is None else low)
            else:  # text, possibly absent (None)
                values[f.name] = self.text(f.name, default) or default
        return cls(**values)

    def size(self, key: str, default: int | None) -> int | None:
        for spelled in size_keys(key):
            self.used.add(spelled)
        try:
            value = pick_size(self.data, key)
        except ValueError as exc:
            self.problem(f"'{key}': {exc}")
            return default
        return default if value is None else value

    def seq(self, key: str) -> list[Any]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(f"'{key}' must be a list")
            return []
        return value

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.used)
        if unknown:
            self.problem(f"unknown key(s): {', '.join(unknown)}")


def _split_words(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [w for w in re.split(r"[;,\s]+", str(value)) if w]


def normalize_tags(value: object) -> tuple[str, ...]:
    """PVE stores tags lower-cased, de-duplicated and sorted."""
    return tuple(sorted({t.lower() for t in _split_words(value)}))


def _parse_node(raw: object, index: int, problems: list[str]) -> NodeSpec:
    name_hint = raw.get("name", "?") if isinstance(raw, Mapping) else "?"
    f = _Fields(raw, f"nodes[{index}] ({name_hint})", problems)
    name = f.required_str("name")
    if name and not NODE_NAME_RE.match(name):
        f.problem(f"invalid node name {name!r}")
    threads = f.integer("threads", 0, minimum=1) or f.integer("cpus", 16, minimum=1)
    if f.has("threads") and f.has("cpus"):
        f.problem("give threads or cpus, not both")
    sockets = f.integer("sockets", 1, minimum=1)
    cores = f.integer("cores", threads, minimum=1)
    memory = f.size("memory", 64 * GIB) or 64 * GIB
    if memory <= 0:
        f.problem("memory must be positive")
    base_mem = f.size("base_mem", min(2 * GIB, memory // 16)) or 0
    node = NodeSpec(
        name=name,
        threads=threads,
        cores=cores,
        sockets=sockets,
        memory=memory,
        online=f.flag("online", True),
        hastate=f.text("hastate", "online", HA_NODE_STATES) or "online",
        base_cpu=f.number("base_cpu", 0.02),
        base_mem=base_mem,
        ip=f.text("ip", "") or f"10.0.0.{index + 1}",
        nodeid=f.integer("nodeid", index + 1, minimum=1),
        rootfs=f.size("rootfs", 100 * GIB) or 100 * GIB,
        rootfs_used=f.size("rootfs_used", 8 * GIB) or 0,
        uptime=f.integer("uptime", 1_000_000 + index * 3_600, minimum=0),
        swap=f.size("swap", 8 * GIB) or 0,
        cpu_model=f.text("cpu_model", NodeSpec.cpu_model) or NodeSpec.cpu_model,
        mhz=f.number("mhz", 2800.0),
    )
    if node.base_cpu > 1:
        f.problem("base_cpu is a fraction of the node's threads (0..1)")
    if base_mem >= memory:
        f.problem("base_mem must be below memory")
    f.finish()
    return node


def _parse_storage(raw: object, index: int, problems: list[str]) -> StorageSpec:
    name_hint = raw.get("name", "?") if isinstance(raw, Mapping) else "?"
    f = _Fields(raw, f"storages[{index}] ({name_hint})", problems)
    name = f.required_str("name")
    stype = f.text("type", None)
    shared = f.flag("shared", stype in ("rbd", "cephfs", "nfs", "cifs", "iscsi", "pbs"))
    if stype is None:
        stype = "rbd" if shared else "lvmthin"
    nodes_raw = f.raw("nodes")
    nodes = tuple(_split_words(nodes_raw)) if nodes_raw is not None else None
    storage = StorageSpec(
        name=name,
        type=stype,
        shared=shared,
        size=f.size("size", 1024 * GIB) or 1024 * GIB,
        content=",".join(_split_words(f.raw("content", "images,rootdir"))),
        nodes=nodes,
    )
    f.finish()
    return storage


def _volume_name(gtype: str, vmid: int, index: int, template: bool, storage_type: str) -> str:
    if gtype == "lxc" and storage_type in ("dir", "zfspool", "nfs", "cifs", "cephfs"):
        prefix = "basevol" if template else "subvol"
    else:
        prefix = "base" if template else "vm"
    return f"{prefix}-{vmid}-disk-{index}"


def _parse_disks(
    f: _Fields,
    gtype: str,
    vmid: int,
    template: bool,
    storages: Mapping[str, StorageSpec],
    default_storage: str | None,
) -> tuple[DiskSpec, ...]:
    entries = f.seq("disks")
    if not f.has("disks"):
        size = 32 * GIB if gtype == "qemu" else 8 * GIB
        entries = [{"storage": default_storage, "size": size}] if default_storage else []
    disks: list[DiskSpec] = []
    next_index = {"qemu": 0, "lxc": 0}
    used_keys: set[str] = set()
    for i, entry in enumerate(entries):
        if isinstance(entry, str) and ":" in entry and "cdrom" not in entry:
            short_store, _, size_text = entry.partition(":")
            entry = {"storage": short_store, "size": size_text}
        d = _Fields(entry, f"{f.where}.disks[{i}]", f.problems)
        cdrom = d.text("cdrom", None)
        if cdrom is not None:
            key = d.text("key", "ide2") or "ide2"
            cd_store = cdrom.split(":", 1)[0] if ":" in cdrom else None
            if cd_store is not None and cd_store not in storages:
                d.problem(f"cdrom storage {cd_store!r} is not defined")
            size = d.size("size", 0) or 0
            disks.append(DiskSpec(key=key, storage=cd_store, size=size, volid=cdrom, cdrom=True))
            used_keys.add(key)
            d.finish()
            continue
        store = d.text("storage", default_storage)
        size = d.size("size", 32 * GIB if gtype == "qemu" else 8 * GIB) or 0
        if gtype == "qemu":
            default_key = f"scsi{len([k for k in used_keys if k.startswith('scsi')])}"
        else:
            default_key = "rootfs" if "rootfs" not in used_keys else f"mp{len(used_keys) - 1}"
        key = d.text("key", default_key) or default_key
        if key in used_keys:
            d.problem(f"disk key {key!r} used twice")
        used_keys.add(key)
        if store is None or store not in storages:
            d.problem(f"storage {store!r} is not defined")
            d.finish()
            continue
        storage = storages[store]
        volume = _volume_name(gtype, vmid, next_index[gtype], template, storage.type)
        next_index[gtype] += 1
        disks.append(DiskSpec(key=key, storage=store, size=size, volid=f"{store}:{volume}"))
        d.finish()
    return tuple(disks)


def _parse_ha(raw: object, where: str, problems: list[str]) -> HAResourceSpec | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return HAResourceSpec()
    if isinstance(raw, str):
        if raw not in HA_RESOURCE_STATES:
            problems.append(f"{where}.ha: state must be one of {', '.join(HA_RESOURCE_STATES)}")
            return None
        return HAResourceSpec(state=raw)
    f = _Fields(raw, f"{where}.ha", problems)
    spec = HAResourceSpec(
        state=f.text("state", "started", HA_RESOURCE_STATES) or "started",
        failback=f.flag("failback", True),
        max_restart=f.integer("max_restart", -1, minimum=0) if f.has("max_restart") else None,
        max_relocate=f.integer("max_relocate", -1, minimum=0) if f.has("max_relocate") else None,
        comment=f.text("comment", None),
    )
    f.finish()
    return spec


def _parse_guest(
    raw: object,
    index: int,
    problems: list[str],
    nodes: Mapping[str, NodeSpec],
    storages: Mapping[str, StorageSpec],
    default_storage: str | None,
) -> GuestSpec | None:
    vmid_hint = raw.get("vmid", "?") if isinstance(raw, Mapping) else "?"
    f = _Fields(raw, f"guests[{index}] (vmid {vmid_hint})", problems)
    vmid = f.integer("vmid", 0, minimum=100)
    if not f.has("vmid"):
        f.problem("'vmid' is required")
    gtype = f.text("type", "qemu", ("qemu", "lxc")) or "qemu"
    node = f.required_str("node")
    if node and node not in nodes:
        f.problem(f"node {node!r} is not defined")
    template = f.flag("template", False)
    status = f.text("status", "stopped" if template else "running", ("running", "stopped"))
    status = status or "running"
    if template and status == "running":
        f.problem("a template cannot be running")
    sockets = f.integer("sockets", 1, minimum=1)
    cores = f.integer("cores", 0, minimum=1)
    cpus = f.integer("cpus", 0, minimum=1) or f.integer("vcpus", 0, minimum=1)
    if not cpus:
        cpus = sockets * (cores or 2)
    if not cores:
        cores = max(1, cpus // sockets)
    cpulimit: float = 0
    if gtype == "lxc":
        cpus, cores, cpulimit = _lxc_cpus(f, cpus, nodes.get(node))
    elif f.has("cpulimit"):
        f.problem("'cpulimit' is modelled for containers only")
        f.raw("cpulimit")
    maxmem = f.size("memory", None) or f.size("maxmem", None) or 2 * GIB
    running = status == "running"
    cpu = f.number("cpu", 0.05 if running else 0.0)
    mem = f.size("mem", maxmem // 2 if running else 0) or 0
    if mem > maxmem:
        f.problem("mem must not exceed the guest's memory")
    memhost = f.size("memhost", mem) or 0
    if not running and (cpu or mem):
        cpu, mem, memhost = 0.0, 0, 0
    lock = f.text("lock", None, GUEST_LOCKS)
    disks = _parse_disks(f, gtype, vmid, template, storages, default_storage)
    hostpci = tuple(_split_words(f.raw("hostpci"))) if gtype == "qemu" else ()
    usb = tuple(_split_words(f.raw("usb"))) if gtype == "qemu" else ()
    if gtype == "lxc" and (f.has("hostpci") or f.has("usb")):
        f.problem("containers have no hostpci/usb passthrough")
        f.raw("hostpci")
        f.raw("usb")
    try:
        profile = parse_profile(f.raw("profile"), f"{f.where}.profile")
    except ValueError as exc:
        problems.append(str(exc))
        profile = LoadProfile()
    noise = f.number("noise", 0.0)
    if noise >= 1:
        f.problem("noise is a relative amplitude below 1 (e.g. 0.1)")
    spec = GuestSpec(
        vmid=vmid,
        name=f.text("name", None) or (f"VM {vmid}" if gtype == "qemu" else f"CT{vmid}"),
        type=gtype,
        node=node,
        status=status,
        cpus=cpus,
        sockets=sockets,
        cores=cores,
        maxmem=maxmem,
        cpu=cpu,
        mem=mem,
        memhost=memhost if gtype == "qemu" else mem,
        template=template,
        tags=normalize_tags(f.raw("tags")),
        lock=lock,
        pool=f.text("pool", None),
        ha=_parse_ha(f.raw("ha"), f.where, problems),
        disks=disks,
        hostpci=hostpci,
        usb=usb,
        profile=profile,
        noise=noise,
        uptime=f.integer("uptime", 86_400 + vmid * 37, minimum=0),
        net_rate=f.number("net_rate", 5_000.0 + (vmid * 7919) % 95_000),
        swap=f.size("swap", 512 * MIB) or 0,
        cpulimit=cpulimit,
    )
    if spec.ha is not None and template:
        f.problem("a template cannot be HA-managed")
    f.finish()
    return spec


def _lxc_cpus(f: _Fields, cpus: int, node: NodeSpec | None) -> tuple[int, int, float]:
    """(nominal cpus, `cores` line or 0, `cpulimit` or 0) of a container. A `cpulimit`
    without cores/cpus leaves the config without `cores`, as `pct set --cpulimit` does."""
    cpulimit = f.number("cpulimit", 0.0)
    if cpulimit > 8192:
        f.problem(f"'cpulimit' must be <= 8192, got {cpulimit}")
        cpulimit = 0.0
    limit: float = int(cpulimit) if cpulimit.is_integer() else cpulimit
    if f.has("cpulimit") and not any(f.has(k) for k in ("cores", "cpus", "vcpus")):
        threads = node.threads if node is not None else 1
        return math.ceil(limit) or threads, 0, limit
    return cpus, cpus, limit


def _parse_rule_nodes(raw: object, f: _Fields) -> tuple[tuple[str, int], ...]:
    items: list[tuple[str, int]] = []
    if isinstance(raw, Mapping):
        for name, prio in raw.items():
            if isinstance(prio, bool) or not isinstance(prio, int) or prio < 0:
                f.problem(f"priority of node {name!r} must be a non-negative integer")
                continue
            items.append((str(name), prio))
    else:
        for word in _split_words(raw):
            name, _, prio_text = word.partition(":")
            if prio_text and not prio_text.isdigit():
                f.problem(f"bad node entry {word!r} (use name or name:priority)")
                continue
            items.append((name, int(prio_text or 0)))
    return tuple(sorted(items))


def _sid(value: object, guests: Mapping[int, GuestSpec]) -> str:
    text = str(value)
    if re.fullmatch(r"\d+", text):
        vmid = int(text)
        guest = guests.get(vmid)
        return guest.sid if guest else f"vm:{vmid}"
    return text


def _parse_rule(
    raw: object,
    index: int,
    problems: list[str],
    nodes: Mapping[str, NodeSpec],
    guests: Mapping[int, GuestSpec],
) -> HARuleSpec:
    hint = raw.get("rule", "?") if isinstance(raw, Mapping) else "?"
    f = _Fields(raw, f"ha_rules[{index}] ({hint})", problems)
    rule = f.required_str("rule")
    rtype = f.required_str("type", ("node-affinity", "resource-affinity"))
    resources = tuple(sorted({_sid(r, guests) for r in _split_words(f.raw("resources"))}))
    if not resources:
        f.problem("'resources' must list at least one resource (vm:ID, ct:ID or a vmid)")
    ha_sids = {g.sid for g in guests.values() if g.ha is not None}
    for sid in resources:
        if sid not in ha_sids:
            f.problem(f"resource {sid} is not an HA-managed guest (set 'ha' on the guest)")
    rule_nodes: tuple[tuple[str, int], ...] = ()
    affinity = None
    if rtype == "node-affinity":
        rule_nodes = _parse_rule_nodes(f.raw("nodes"), f)
        if not rule_nodes:
            f.problem("node-affinity needs 'nodes'")
        for name, _ in rule_nodes:
            if name not in nodes:
                f.problem(f"node {name!r} is not defined")
    elif rtype == "resource-affinity":
        affinity = f.required_str("affinity", ("positive", "negative"))
        if len(resources) < 2:
            f.problem("resource-affinity needs at least two resources")
    spec = HARuleSpec(
        rule=rule,
        type=rtype,
        resources=resources,
        order=f.integer("order", index + 1, minimum=0),
        nodes=rule_nodes,
        strict=f.flag("strict", False) if rtype == "node-affinity" else False,
        affinity=affinity,
        disable=f.flag("disable", False),
        comment=f.text("comment", None),
    )
    if rtype != "node-affinity" and f.has("strict"):
        f.problem("'strict' only applies to node-affinity rules")
    f.finish()
    return spec


#: pve-cluster DataCenterConfig.pm `$crs_format`: the value kinds of each `crs` key.
CRS_BOOLEANS = ("ha-rebalance-on-start", "ha-auto-rebalance")
CRS_NUMBERS: dict[str, tuple[float, float | None]] = {
    "ha-auto-rebalance-threshold": (0, 100),
    "ha-auto-rebalance-hold-duration": (0, None),
    "ha-auto-rebalance-margin": (0, 100),
}
CRS_ENUMS: dict[str, tuple[str, ...]] = {
    "ha": ("basic", "static", "dynamic"),
    "ha-auto-rebalance-method": ("bruteforce", "topsis"),
}
#: Keys the format marks `requires => 'ha-auto-rebalance'`.
CRS_NEED_AUTO_REBALANCE = (
    "ha-auto-rebalance-threshold", "ha-auto-rebalance-method",
    "ha-auto-rebalance-hold-duration", "ha-auto-rebalance-margin",
)
_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_crs(value: object) -> dict[str, Any]:
    """`crs` as GET /cluster/options returns it, from the datacenter.cfg string or a mapping.

    pve-cluster DataCenterConfig.pm `parse_datacenter_config` runs pve-common JSONSchema.pm
    `parse_property_string`: only booleans are converted (to 1/0), numbers stay strings.
    Raises ValueError where that parse fails (a bare value, as the format has no default key;
    an unknown key or bad value); PVE then leaves `crs` out of the answer.
    """
    result: dict[str, Any] = {}
    for key, raw in _crs_pairs(value):
        if key in result:
            raise ValueError(f"duplicate key in comma-separated list property: {key}")
        result[key] = _crs_value(key, raw)
    for key in CRS_NEED_AUTO_REBALANCE:
        if key in result and "ha-auto-rebalance" not in result:
            raise ValueError(f"{key}: missing property - 'ha-auto-rebalance'")
    return result


def _crs_pairs(value: object) -> list[tuple[str, object]]:
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    pairs: list[tuple[str, object]] = []
    for part in str(value).split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError("value without key, but schema does not define a default key")
        if not key or not raw:
            raise ValueError("missing key in comma-separated list property")
        pairs.append((key, raw))
    return pairs


def _crs_value(key: str, raw: object) -> Any:
    """One `crs` value as parse_property_string leaves it (booleans via parse_boolean)."""
    if key in CRS_BOOLEANS:
        if isinstance(raw, bool) or raw in (0, 1):
            return int(raw)
        text = str(raw).lower()
        if text in ("1", "on", "yes", "true", "0", "off", "no", "false"):
            return int(text in ("1", "on", "yes", "true"))
        raise ValueError(f"{key}: type check ('boolean') failed - got '{raw}'")
    if key in CRS_NUMBERS:
        text = str(raw)
        if isinstance(raw, bool) or not _NUMBER_RE.fullmatch(text):
            raise ValueError(f"{key}: type check ('number') failed - got '{raw}'")
        low, high = CRS_NUMBERS[key]
        if float(text) < low or (high is not None and float(text) > high):
            raise ValueError(f"{key}: value out of range - got '{raw}'")
        return text
    if key in CRS_ENUMS:
        if str(raw) not in CRS_ENUMS[key]:
            raise ValueError(f"{key}: value '{raw}' does not have a value in the enumeration")
        return str(raw)
    raise ValueError(f"invalid key in comma-separated list property: {key}")


def _parse_options(raw: object, problems: list[str]) -> dict[str, Any]:
    """The datacenter.cfg keys GET /cluster/options returns. A `crs` mapping with a typo is
    a scenario error; a `crs` string PVE cannot parse is dropped, as PVE drops it."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append("options: expected a mapping (the /cluster/options object)")
        return {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "crs":
            try:
                options["crs"] = parse_crs(value)
            except ValueError as exc:
                if isinstance(value, Mapping):
                    problems.append(f"options.crs: {exc}")
        elif isinstance(value, bool):
            options[str(key)] = int(value)
        else:
            options[str(key)] = value
    return options


def _default_storages() -> list[dict[str, Any]]:
    return [
        {"name": "local", "type": "dir", "shared": False, "size_gib": 100,
         "content": "iso,vztmpl,backup"},
        {"name": "local-lvm", "type": "lvmthin", "shared": False, "size_gib": 800,
         "content": "images,rootdir"},
        {"name": "ceph-vm", "type": "rbd", "shared": True, "size_gib": 20480,
         "content": "images,rootdir"},
    ]


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate scenario data (as loaded from YAML/JSON) into a Scenario, or raise ScenarioError."""
    problems: list[str] = []
    top = _Fields(data, "scenario", problems)

    c = _Fields(top.raw("cluster", {}), "cluster", problems)
    cluster = c.section(ClusterSpec, minimum={"config_version": 1})
    if "release" not in c.data:  # PVE's release is its version's major.minor
        cluster = replace(cluster, release=".".join(cluster.version.split(".")[:2]))
    c.finish()

    a = _Fields(top.raw("auth", {}), "auth", problems)
    auth = a.section(AuthSpec)
    if "@" not in auth.user:
        a.problem("user must look like NAME@REALM")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.\-_]+", auth.token_name):
        a.problem(f"invalid token_name {auth.token_name!r}")
    a.finish()

    m = _Fields(top.raw("migration", {}), "migration", problems)
    migration = m.section(MigrationSpec)
    m.finish()

    h = _Fields(top.raw("ha", {}), "ha", problems)
    ha_settings = h.section(HASettings, minimum={"max_workers": 1, "crm_interval": 0.1})
    h.finish()

    options = _parse_options(top.raw("options"), problems)

    raw_nodes = top.seq("nodes")
    if not raw_nodes:
        problems.append("scenario: at least one node is required under 'nodes'")
    nodes: dict[str, NodeSpec] = {}
    for i, raw in enumerate(raw_nodes):
        node = _parse_node(raw, i, problems)
        if node.name in nodes:
            problems.append(f"nodes[{i}]: duplicate node name {node.name!r}")
        nodes[node.name] = node
    if len({n.nodeid for n in nodes.values()}) != len(nodes):
        problems.append("nodes: nodeid values must be unique")
    if cluster.entry_node is not None and cluster.entry_node not in nodes:
        problems.append(f"cluster.entry_node {cluster.entry_node!r} is not a defined node")

    raw_storages = top.seq("storages") if top.has("storages") else _default_storages()
    top.used.add("storages")
    storages: dict[str, StorageSpec] = {}
    for i, raw in enumerate(raw_storages):
        storage = _parse_storage(raw, i, problems)
        if storage.name in storages:
            problems.append(f"storages[{i}]: duplicate storage name {storage.name!r}")
        for name in storage.nodes or ():
            if name not in nodes:
                problems.append(f"storages[{i}] ({storage.name}): node {name!r} is not defined")
        storages[storage.name] = storage
    image_storages = [s for s in storages.values() if "images" in s.content.split(",")]
    shared_first = sorted(image_storages, key=lambda s: not s.shared)
    default_storage = shared_first[0].name if shared_first else None

    guests: dict[int, GuestSpec] = {}
    for i, raw in enumerate(top.seq("guests")):
        guest = _parse_guest(raw, i, problems, nodes, storages, default_storage)
        if guest is None:
            continue
        if guest.vmid in guests and guest.vmid:
            problems.append(f"guests[{i}]: duplicate vmid {guest.vmid}")
        guests[guest.vmid] = guest
        if guest.node in nodes:
            for disk in guest.disks:
                disk_store = storages.get(disk.storage or "")
                if disk_store and not disk.cdrom and not disk_store.available_on(guest.node):
                    problems.append(
                        f"guests[{i}] (vmid {guest.vmid}): storage {disk_store.name!r} "
                        f"is not available on node {guest.node!r}"
                    )

    rules: list[HARuleSpec] = []
    for i, raw in enumerate(top.seq("ha_rules")):
        rules.append(_parse_rule(raw, i, problems, nodes, guests))
    if len({r.rule for r in rules}) != len(rules):
        problems.append("ha_rules: rule ids must be unique")
    seen_node_affinity: dict[str, str] = {}
    for rule in rules:
        if rule.type != "node-affinity" or rule.disable:
            continue
        for sid in rule.resources:
            if sid in seen_node_affinity:
                problems.append(
                    f"ha_rules ({rule.rule}): {sid} is already in node-affinity rule "
                    f"{seen_node_affinity[sid]!r} (a resource may be in only one)"
                )
            seen_node_affinity[sid] = rule.rule

    pools_raw = top.raw("pools", {})
    pools: dict[str, str] = {}
    if isinstance(pools_raw, Mapping):
        pools = {str(k): str(v or "") for k, v in pools_raw.items()}
    elif isinstance(pools_raw, list):
        pools = {str(p): "" for p in pools_raw}
    else:
        problems.append("pools: expected a mapping of pool id to comment, or a list")
    for guest in guests.values():
        if guest.pool and guest.pool not in pools:
            pools[guest.pool] = ""

    top.finish()
    if problems:
        raise ScenarioError(problems)
    return Scenario(
        cluster=cluster,
        auth=auth,
        options=options,
        migration=migration,
        ha_settings=ha_settings,
        nodes=tuple(nodes.values()),
        storages=tuple(storages.values()),
        guests=tuple(sorted(guests.values(), key=lambda g: g.vmid)),
        ha_rules=tuple(sorted(rules, key=lambda r: (r.order, r.rule))),
        pools=pools,
    )


def load_scenario(source: Scenario | Mapping[str, Any] | str | Path) -> Scenario:
    """A Scenario from a file path (.yaml/.yml/.json), a dict, or an existing Scenario."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"cannot read scenario file {path}: {exc}"]) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ScenarioError([f"{path}: not valid {kind}: {exc}"]) from exc
    if not isinstance(data, Mapping):
        raise ScenarioError([f"{path}: top level must be a mapping"])
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError([f"{path}: {p}" for p in exc.problems]) from None


_GUEST_SHAPES: tuple[tuple[int, int], ...] = (
    (1, 1), (1, 2), (2, 2), (2, 4), (2, 4), (4, 8), (4, 8), (4, 16), (8, 16), (8, 32), (16, 64),
)


def generate(
    nodes: int = 32,
    guests: int = 1500,
    seed: int = 0,
    hot_nodes: int | Sequence[str] = 2,
    *,
    node_threads: int = 64,
    node_memory_gib: int | None = None,
    containers: float = 0.15,
    stopped: float = 0.05,
    ha_fraction: float = 0.1,
    templates: int = 2,
    anti_affinity_pairs: int = 5,
    name: str = "synthetic",
) -> dict[str, Any]:
    """A big synthetic cluster as plain scenario data (JSON-serializable; pass to load_scenario).

    Nodes are `pve01`..; guests get vmids from 1000. `hot_nodes` (a count of the first nodes,
    or explicit names) get enough sustained guest load to sit at ~95% CPU; the others land
    between 20% and 55%. Memory per node is sized so the busiest node is about 70% full
    unless `node_memory_gib` is given. Same arguments, same cluster.
    """
    if nodes < 1 or guests < 0:
        raise ValueError("need nodes >= 1 and guests >= 0")
    rng = random.Random(seed)
    width = max(2, len(str(nodes)))
    names = [f"pve{i + 1:0{width}d}" for i in range(nodes)]
    if isinstance(hot_nodes, int):
        hot = set(names[:hot_nodes])
    else:
        hot = {hot_nodes} if isinstance(hot_nodes, str) else set(hot_nodes)
    unknown = hot - set(names)
    if unknown:
        raise ValueError(f"hot_nodes not in the cluster: {sorted(unknown)}")

    placed: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    guest_list: list[dict[str, Any]] = []
    for i in range(guests):
        vmid = 1000 + i
        node = names[i % nodes]
        vcpus, mem_gib = rng.choice(_GUEST_SHAPES)
        is_ct = rng.random() < containers
        is_template = i < templates
        status = "stopped" if is_template or rng.random() < stopped else "running"
        guest: dict[str, Any] = {
            "vmid": vmid,
            "name": f"{'ct' if is_ct else 'vm'}-{vmid}",
            "type": "lxc" if is_ct else "qemu",
            "node": node,
            "status": status,
            "cpus": vcpus,
            "memory_gib": mem_gib,
            "tags": ["synthetic", rng.choice(["web", "db", "batch", "cache", "app"])],
        }
        if is_template:
            guest["template"] = True
        guest_list.append(guest)
        if status == "running":
            placed[node].append(guest)

    max_mem_need = 0
    for node in names:
        running = placed[node]
        target = 0.95 if node in hot else rng.uniform(0.2, 0.55)
        weights = [rng.uniform(0.2, 1.0) for _ in running]
        total_weight = sum(weights) or 1.0
        demand_threads = max(0.0, target - 0.02) * node_threads
        mem_need = 0
        for guest, weight in zip(running, weights, strict=True):
            share = demand_threads * weight / total_weight
            guest["cpu"] = round(min(1.6, share / guest["cpus"]), 4)
            used = rng.uniform(0.35, 0.9) * guest["memory_gib"]
            guest["mem_mib"] = int(used * 1024)
            mem_need += guest["mem_mib"] * MIB
            if rng.random() < 0.1:
                guest["noise"] = 0.05
        max_mem_need = max(max_mem_need, mem_need)

    memory_gib = node_memory_gib
    if memory_gib is None:
        memory_gib = max(64, int((max_mem_need / GIB + 4) / 0.7 / 64 + 1) * 64)

    ha_candidates = [g for g in guest_list if g["status"] == "running" and g["type"] == "qemu"]
    rng.shuffle(ha_candidates)
    ha_guests = ha_candidates[: int(len(ha_candidates) * ha_fraction)]
    for guest in ha_guests:
        guest["ha"] = "started"
    rules: list[dict[str, Any]] = []
    pairs = ha_guests[: 2 * anti_affinity_pairs]
    for k in range(0, len(pairs) - 1, 2):
        first, second = pairs[k], pairs[k + 1]
        if first["node"] == second["node"]:
            continue
        rules.append({
            "rule": f"apart-{first['vmid']}-{second['vmid']}",
            "type": "resource-affinity",
            "affinity": "negative",
            "resources": [first["vmid"], second["vmid"]],
        })

    return {
        "cluster": {"name": name},
        "nodes": [
            {"name": n, "threads": node_threads, "cores": node_threads // 2,
             "memory_gib": memory_gib, "base_cpu": 0.02, "base_mem_gib": 4}
            for n in names
        ],
        "storages": [
            {"name": "local", "type": "dir", "shared": False, "size_gib": 100,
             "content": "iso,vztmpl,backup"},
            {"name": "ceph-vm", "type": "rbd", "shared": True, "size_tib": 500,
             "content": "images,rootdir"},
        ],
        "guests": guest_list,
        "ha_rules": rules,
    }
