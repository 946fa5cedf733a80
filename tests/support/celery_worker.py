"""Real Celery processes (worker, beat, `celery call`) against the test Redis and simulator.

`BalancerDeployment` writes a config file for a running simulator, starts workers and beat as
subprocesses with that config, and stops them (whole process groups) at teardown. Tests wait
on conditions (the simulator's logs, Redis state), never on fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.redis_server import wait_until

REPO = Path(__file__).resolve().parents[2]
#: A `sitecustomize` that shifts a process's wall clock (see skewed_clock/sitecustomize.py).
SKEWED_CLOCK = Path(__file__).resolve().parent / "skewed_clock"

#: Fast timings for tests: 0.5 s cycles, a 3 s EMA window (6 samples, 3 before acting).
FAST_BALANCING: dict[str, Any] = {
    "interval_seconds": 0.5,
    "ema_window_seconds": 3,
    "migration_cooldown_seconds": 60,
}


@dataclass
class CeleryProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[int]:
        """Pids of this process's direct children (from /proc)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class BalancerDeployment:
    """One balancer configuration and the Celery processes started with it."""

    workdir: Path
    config_path: Path
    env: dict[str, str]
    processes: list[CeleryProcess] = field(default_factory=list)

    def _env(self, clock_offset: float) -> dict[str, str]:
        """The deployment's environment; with `clock_offset`, a wall clock that far off."""
        if not clock_offset:
            return self.env
        return {**self.env, "PVE_BALANCER_TEST_CLOCK_OFFSET": str(clock_offset),
                "PYTHONPATH": f"{SKEWED_CLOCK}{os.pathsep}{self.env['PYTHONPATH']}"}

    def _spawn(self, name: str, args: list[str], clock_offset: float = 0.0) -> CeleryProcess:
        log_path = self.workdir / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tasks", *args],
                cwd=REPO, env=self._env(clock_offset), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = CeleryProcess(name, process, log_path)
        self.processes.append(proc)
        return proc

    def start_worker(self, concurrency: int = 2, hostname: str | None = None,
                     wait: bool = True, clock_offset: float = 0.0,
                     embedded_beat: bool = False) -> CeleryProcess:
        """A worker; `embedded_beat`: `worker -B --pool solo` (the README's single process:
        its only child is then the embedded beat)."""
        name = hostname or f"w{len(self.processes)}"
        pool = ["-B", "--pool", "solo"] if embedded_beat else ["--concurrency", str(concurrency)]
        proc = self._spawn("worker", ["worker", "--loglevel", "INFO", *pool,
                                      "--hostname", f"{name}@%h",
                                      "--without-mingle", "--without-gossip"], clock_offset)
        if wait:
            wait_until(lambda: "worker ready" in proc.log() or not proc.alive(), timeout=60,
                       what="celery worker ready")
            assert proc.alive(), proc.log()
        return proc

    def start_beat(self, clock_offset: float = 0.0) -> CeleryProcess:
        schedule = self.workdir / f"beat-{len(self.processes)}.schedule"
        return self._spawn("beat", ["beat", "--loglevel", "INFO", "--schedule", str(schedule)],
                           clock_offset)

    def start_flower(self, port: int, basic_auth: str | None = None) -> CeleryProcess:
        args = ["flower", f"--port={port}", "--address=127.0.0.1"]
        if basic_auth:
            args.append(f"--basic-auth={basic_auth}")
        return self._spawn("flower", args)

    def call(self, *args: str, timeout: float = 60.0) -> str:
        """Run a `celery -A tasks ...` command to completion and return its stdout."""
        result = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", *args],
                                cwd=REPO, env=self.env, capture_output=True, timeout=timeout,
                                check=True)
        return result.stdout.decode()

    def cli(self, *args: str, timeout: float = 60.0,
            clock_offset: float = 0.0) -> subprocess.CompletedProcess[str]:
        """Run `pve-balancer --config <this config> ...` (not checked: tests look at the
        exit code, stdout and stderr)."""
        command = ["import sys; from balancer.cli import main; sys.exit(main())"]
        return subprocess.run([sys.executable, "-c", *command, "--config",
                               str(self.config_path), *args], cwd=REPO,
                              env=self._env(clock_offset),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path.name})\n{p.log()}" for p in self.processes)


def write_config(path: Path, host_port: str, user: str, token_name: str, redis_url: str,
                 hosts_first: tuple[str, ...] = (), sections: dict[str, Any] | None = None,
                 **balancing: Any) -> None:
    doc = {
        "proxmox": {"hosts": [*hosts_first, host_port], "user": user,
                    "token_name": token_name,
                    "verify_ssl": False, "timeout_seconds": 5},
        "redis": {"url": redis_url},
        "balancing": {**FAST_BALANCING, **balancing},
        **(sections or {}),
    }
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture
def deployment_factory(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    """`make(running_sim, redis=None, hosts_first=(), sections=None, **balancing) ->
    BalancerDeployment` (token passed via env); `redis` overrides the session's Redis URL
    (e.g. a password-protected server); `hosts_first` are PVE hosts tried before the
    simulator; `sections` are other config sections (e.g. notifications)."""
    made: list[BalancerDeployment] = []

    def make(sim: Any, redis: str | None = None, hosts_first: tuple[str, ...] = (),
             sections: dict[str, Any] | None = None, **balancing: Any) -> BalancerDeployment:
        workdir = tmp_path / f"deploy{len(made)}"
        workdir.mkdir()
        config_path = workdir / "balancer.yaml"
        write_config(config_path, sim.host_port, sim.user, sim.token_name, redis or redis_url,
                     hosts_first, sections, **balancing)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY", "REDIS"))}
        env.update(BALANCER_CONFIG=str(config_path), PVE_TOKEN_VALUE=sim.token_value,
                   PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        deployment = BalancerDeployment(workdir, config_path, env)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.stop_all()
