"""The systems under test, each started against a running simulator.

* `PveBalancer`: the product end to end, as deployed: a private redis-server, a real Celery
  worker and RedBeat beat (`celery -A tasks ...`) with a config file pointing at the simulator.
  Production timings (5 s interval, 60 s EMA window, 600 s cooldown) are divided by the
  simulator's speed factor so that, in simulated time, it behaves as in production.
* `ProxLB`: ProxLB 2.3.0 from PyPI in the benchmark venv, run as its systemd unit runs it
  (`python -m proxlb -c FILE`, daemon mode), with its documented default balancing settings
  and `method: memory` or `method: cpu`; its sleeps follow the simulated clock
  (`benchmarks.proxlb_launcher`).

Lifecycle: `prepare()` (the clock is still all but stopped), `go()` (the clock runs), `stop()`
returns what only the system itself knows (cycles, latencies, Redis commands).
"""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from benchmarks.procs import REPO, Children, RedisServer, wait_for
from pvesim import SimServer, Simulator

#: Production timings of pve-balancer (config defaults), in seconds.
PROD_INTERVAL = 5.0
PROD_EMA_WINDOW = 60.0
PROD_COOLDOWN = 600.0

_EVAL_DONE = re.compile(r"Task balancer\.evaluate\[[^\]]+\] succeeded in ([0-9.eE+-]+)s: "
                        r"\{'action': '(\w+)'")

_MIGRATE_DECISION = re.compile(r"balancer\.evaluate decision action=migrate .*?reason=(\w+)")


@dataclass
class SystemStats:
    """What a system reports about itself after a run."""

    cycles: int = 0
    cycle_latencies_ms: list[float] = field(default_factory=list)
    #: cycles that read the cluster and decided (not skipped, e.g. while a migration runs)
    decide_latencies_ms: list[float] = field(default_factory=list)
    redis_commands: int | None = None
    redis_top: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: pve-balancer: migrations requested per trigger (cpu, memory, proactive)
    move_reasons: dict[str, int] = field(default_factory=dict)


class System(Protocol):
    name: str
    label: str

    def prepare(self, sim: Simulator, server: SimServer, workdir: Path) -> None: ...

    def go(self) -> None: ...

    def check(self) -> None: ...

    def stop(self) -> SystemStats: ...


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class PveBalancer:
    name = "pve-balancer"
    label = "pve-balancer"

    def __init__(self, speed: float, concurrency: int = 2) -> None:
        self.speed = speed
        self.concurrency = concurrency
        self.children: Children | None = None
        self.redis: RedisServer | None = None
        self.env: dict[str, str] = {}
        self.workdir = Path()
        self._stats_before: dict[str, int] = {}

    def balancing(self) -> dict[str, float]:
        return {
            "interval_seconds": PROD_INTERVAL / self.speed,
            "ema_window_seconds": PROD_EMA_WINDOW / self.speed,
            "migration_cooldown_seconds": PROD_COOLDOWN / self.speed,
        }

    def prepare(self, sim: Simulator, server: SimServer, workdir: Path) -> None:
        self.workdir = workdir
        self.children = Children(workdir)
        self.redis = RedisServer(self.children)
        self.redis.start()
        config = {
            "proxmox": {"hosts": [server.host_port], "user": sim.auth.user,
                        "token_name": sim.auth.token_name, "verify_ssl": False,
                        "timeout_seconds": 10},
            "redis": {"url": self.redis.url},
            "balancing": self.balancing(),
            "logging": {"format": "text", "level": "INFO"},
        }
        config_path = workdir / "balancer.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CELERY", "REDIS", "BALANCER", "PVE_"))}
        env.update(BALANCER_CONFIG=str(config_path), PVE_TOKEN_VALUE=sim.auth.token_value,
                   PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.env = env
        worker = self.children.spawn("worker", [
            sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel", "INFO",
            "--concurrency", str(self.concurrency), "--hostname", "bench@%h",
            "--without-mingle", "--without-gossip"], env=env)
        wait_for(lambda: "worker ready" in worker.log() or not worker.alive(), 90,
                 "celery worker ready", interval=0.1)
        if not worker.alive():
            raise RuntimeError(f"celery worker exited; see {worker.log_path}")

    def go(self) -> None:
        assert self.children is not None and self.redis is not None
        self._stats_before = self.redis.commandstats()
        self.children.spawn("beat", [
            sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO",
            "--schedule", str(self.workdir / "beat.schedule")], env=self.env)

    def check(self) -> None:
        assert self.children is not None
        self.children.check_alive()

    def stop(self) -> SystemStats:
        assert self.children is not None and self.redis is not None
        stats = SystemStats()
        beat = next(c for c in self.children.children if c.name == "beat")
        beat.stop()
        try:
            after = self.redis.commandstats()
            delta = {k: v - self._stats_before.get(k, 0) for k, v in after.items()}
            delta = {k: v for k, v in delta.items() if v > 0 and k != "info"}
            stats.redis_commands = sum(delta.values())
            stats.redis_top = dict(sorted(delta.items(), key=lambda kv: -kv[1])[:8])
            stats.skipped = self._skipped()
        except Exception as exc:  # stats are best effort; the run's other figures stand
            stats.notes.append(f"redis stats unavailable: {exc}")
        self.children.stop()
        worker_log = (self.workdir / "worker.log").read_text(errors="replace")
        done = _EVAL_DONE.findall(worker_log)
        stats.cycle_latencies_ms = [float(seconds) * 1000 for seconds, _ in done]
        stats.decide_latencies_ms = [float(seconds) * 1000 for seconds, action in done
                                     if action != "skipped"]
        stats.cycles = len(done)
        for reason in _MIGRATE_DECISION.findall(worker_log):
            stats.move_reasons[reason] = stats.move_reasons.get(reason, 0) + 1
        return stats

    def _skipped(self) -> dict[str, float]:
        from balancer.state import StateStore

        assert self.redis is not None
        snap = StateStore.from_url(self.redis.url).metrics.snapshot()
        out = {dict(k).get("reason", "?"): v
               for k, v in snap.counters.get("skipped_cycles", {}).items()}
        for k, v in snap.counters.get("decisions", {}).items():
            out[f"decided:{dict(k).get('action', '?')}"] = (
                out.get(f"decided:{dict(k).get('action', '?')}", 0.0) + v)
        return out


#: ProxLB's documented defaults (README option table), i.e. what a user gets who copies them.
PROXLB_BALANCING: dict[str, Any] = {
    "enable": True,
    "enforce_affinity": False,
    "enforce_pinning": False,
    "parallel": False,
    "parallel_jobs": 5,
    "live": True,
    "with_local_disks": True,
    "with_conntrack_state": True,
    "balance_types": ["vm", "ct"],
    "max_job_validation": 1800,
    "balanciness": 10,
    "memory_threshold": 75,
    "cpu_threshold": 75,
    "mode": "used",
    "balance_larger_guests_first": False,
}


class ProxLB:
    """ProxLB in daemon mode every `interval_minutes` (simulated), as its systemd unit runs it."""

    def __init__(self, method: str, speed: float, python: Path,
                 interval_minutes: int = 5) -> None:
        self.method = method
        self.name = f"proxlb-{method}"
        self.label = f"ProxLB 2.3.0 ({method})"
        self.speed = speed
        self.python = python
        self.interval_minutes = interval_minutes
        self.children: Children | None = None
        self.workdir = Path()
        self.args: list[str] = []

    def config(self, sim: Simulator, server: SimServer) -> dict[str, Any]:
        return {
            "proxmox_api": {"hosts": [server.host_port], "user": sim.auth.user,
                            "token_id": sim.auth.token_name,
                            "token_secret": sim.auth.token_value,
                            "ssl_verification": False, "timeout": 10},
            "proxmox_cluster": {"maintenance_nodes": [], "ignore_nodes": []},
            "balancing": {**PROXLB_BALANCING, "method": self.method},
            "service": {"daemon": True, "enable_ha": False,
                        "schedule": {"interval": self.interval_minutes, "format": "minutes"},
                        "log_level": "INFO"},
        }

    def prepare(self, sim: Simulator, server: SimServer, workdir: Path) -> None:
        self.workdir = workdir
        self.children = Children(workdir)
        config_path = workdir / "proxlb.yaml"
        config_path.write_text(yaml.safe_dump(self.config(sim, server), sort_keys=False))
        self.args = [str(self.python), "-m", "benchmarks.proxlb_launcher", "--speed",
                     str(self.speed), "--", "-c", str(config_path)]

    def go(self) -> None:
        assert self.children is not None
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.children.spawn("proxlb", self.args, env=env)

    def check(self) -> None:
        assert self.children is not None
        child = self.children.children[0]
        if not child.alive():
            raise RuntimeError(f"ProxLB exited with {child.process.returncode}; "
                               f"see {child.log_path}")

    def stop(self) -> SystemStats:
        assert self.children is not None
        self.children.stop()
        stats = SystemStats()
        log = (self.workdir / "proxlb.log").read_text(errors="replace")
        for line in log.splitlines():
            if "Traceback" in line or "CRITICAL" in line:
                stats.notes.append(line.strip()[:200])
        stats.notes = stats.notes[:5]
        return stats


def latency_summary(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return math.nan, math.nan
    return statistics.median(latencies), percentile(latencies, 0.99)
