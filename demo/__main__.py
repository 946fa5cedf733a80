"""`python -m demo` (what `make demo` runs): start Redis, the PVE simulator on the demo
scenario, a Celery worker, beat and Flower, then narrate what the balancer sees and does.

Ctrl-C stops everything this started; nothing is left running. All files live in `.demo/`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from balancer.render import pct, table
from balancer.state import StateStore
from balancer.state.cache import NODES_CACHE
from pvesim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "config" / "scenarios" / "demo.yaml"
WORKDIR = REPO / ".demo"


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


@dataclass
class Services:
    """Child processes in their own sessions, stopped together (process groups)."""

    workdir: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              stdout: int | IO[Any] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=stdout or log,
                                stderr=log, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); see .demo/{name}.log")

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def start_simulator(services: Services, speed: float) -> str:
    proc = services.start("pvesim", [sys.executable, "-m", "pvesim", "--scenario", str(SCENARIO),
                                     "--port", "0", "--speed", str(speed)],
                          stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("pvesim ready "):
        raise RuntimeError("simulator did not start; see .demo/pvesim.log")
    return line.split()[2].removeprefix("https://")


def write_config(path: Path, host_port: str, redis_url: str, scenario: Any) -> None:
    config = {
        "proxmox": {"hosts": [host_port], "user": scenario.auth.user,
                    "token_name": scenario.auth.token_name, "verify_ssl": False},
        "redis": {"url": redis_url},
        # One-second cycles and a 12 s window: the demo's cluster runs 10x real time.
        "balancing": {"interval_seconds": 1, "ema_window_seconds": 12,
                      "migration_cooldown_seconds": 120},
    }
    path.write_text(yaml.safe_dump(config))


class Narrator:
    """Prints node usage and every new decision and migration event from the shared state."""

    def __init__(self, store: StateStore, cpu_max: float, memory_max: float) -> None:
        self.store = store
        self.cpu_max = cpu_max
        self.memory_max = memory_max
        self.seen: set[str] = set()
        self.calm_cycles = 0

    def nodes_table(self) -> str:
        nodes = (self.store.cache.get(NODES_CACHE) or {}).get("nodes", [])
        ema = self.store.ema.entries()
        return table(["node", "cpu now", "cpu ema", "memory", "guests"], [
            [n["name"], pct(n["cpu"]), pct(ema[n["name"]].value) if n["name"] in ema else "-",
             pct(n["memory"]), n["guests"]] for n in nodes])

    def new_events(self) -> list[str]:
        lines: list[tuple[float, str]] = []
        for d in self.store.history.decisions(20):
            key = f"decision:{d.get('at')}"
            if key not in self.seen:
                self.seen.add(key)
                lines.append((float(d.get("at", 0)), f"decision   {d['explanation'][0]}"))
        for e in self.store.history.events(20):
            key = f"migration:{e.at}:{e.kind}"
            if key not in self.seen:
                self.seen.add(key)
                lines.append((e.at, f"migration  vm {e.vmid} {e.source} -> {e.target}: {e.kind}"
                              + (f" ({e.upid})" if e.upid else "")
                              + (f" in {e.duration:.1f}s" if e.duration else "")
                              + (f": {e.outcome}" if e.kind == "failed" else "")))
        return [line for _, line in sorted(lines)]

    def settled(self) -> bool:
        nodes = (self.store.cache.get(NODES_CACHE) or {}).get("nodes", [])
        ema = self.store.ema.entries()
        hot = [n for n in nodes if n["memory"] > self.memory_max
               or (n["name"] in ema and ema[n["name"]].value > self.cpu_max)]
        last = self.store.history.last_decision()
        calm = (not hot and self.store.lock.holder() is None and last is not None
                and last.get("action") == "none")
        self.calm_cycles = self.calm_cycles + 1 if calm else 0
        return self.calm_cycles >= 5


def run(args: argparse.Namespace) -> int:
    if shutil.which("redis-server") is None:
        print("redis-server is missing: run `make demo` (it installs Debian's redis-server)")
        return 1
    WORKDIR.mkdir(exist_ok=True)
    services = Services(WORKDIR)
    try:
        redis_port = free_port()
        services.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                 "127.0.0.1", "--save", "", "--dir", str(WORKDIR)])
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        store = StateStore.from_url(redis_url)
        wait_for(lambda: _pings(store), 10, "redis-server")
        scenario = load_scenario(SCENARIO)
        host_port = start_simulator(services, args.speed)
        config_path = WORKDIR / "balancer.yaml"
        write_config(config_path, host_port, redis_url, scenario)
        env = {**os.environ, "BALANCER_CONFIG": str(config_path),
               "PVE_TOKEN_VALUE": scenario.auth.token_value}
        celery = [sys.executable, "-m", "celery", "-A", "tasks"]
        services.start("worker", [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"],
                       env=env)
        services.start("beat", [*celery, "beat", "--loglevel", "INFO",
                                "--schedule", str(WORKDIR / "beat.schedule")], env=env)
        flower_port = free_port(5555)
        services.start("flower", [*celery, "flower", f"--port={flower_port}",
                                  "--address=127.0.0.1"], env=env)
        web_port = free_port(8108)
        services.start("web", [sys.executable, "-m", "balancer.cli", "web",
                               "--port", str(web_port)], env=env)
        print(f"simulated cluster 'demo' at https://{host_port} (10x real time)")
        print(f"Flower: http://127.0.0.1:{flower_port}/   status page: "
              f"http://127.0.0.1:{web_port}/")
        print("logs: .demo/*.log   Ctrl-C stops all")
        return narrate(services, store, args)
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping demo services ...")
        services.stop()


def _pings(store: StateStore) -> bool:
    try:
        return store.ping()
    except Exception:
        return False


def narrate(services: Services, store: StateStore, args: argparse.Namespace) -> int:
    narrator = Narrator(store, cpu_max=0.8, memory_max=0.8)
    started = time.monotonic()
    last_table = 0.0
    announced = False
    while True:
        services.check_alive()
        for line in narrator.new_events():
            print(line, flush=True)
        if time.monotonic() - last_table > args.table_every:
            last_table = time.monotonic()
            print("\n" + narrator.nodes_table() + "\n", flush=True)
        if not announced and narrator.settled():
            announced = True
            print("cluster settled: every node below its thresholds, nothing left to do.\n"
                  + narrator.nodes_table(), flush=True)
            if args.exit_when_settled:
                return 0
            print("still running: watch Flower, or Ctrl-C to stop", flush=True)
        if time.monotonic() - started > args.timeout:
            print("timed out before the cluster settled", flush=True)
            return 1
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=10.0, help="simulated seconds per second")
    parser.add_argument("--exit-when-settled", action="store_true",
                        help="stop once the cluster is settled (for smoke tests)")
    parser.add_argument("--timeout", type=float, default=float("inf"),
                        help="give up after this many seconds")
    parser.add_argument("--table-every", type=float, default=10.0,
                        help="seconds between node tables")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
