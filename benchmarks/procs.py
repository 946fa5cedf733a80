"""Child processes for a benchmark run: each in its own session, stopped as a process group.

Every process a run starts is registered here, so a crash, Ctrl-C or SIGTERM in the runner
still ends all of them (`stop_all`, also registered with `atexit`). Nothing is killed by name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL it if it does not exit in time."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait()
        # Children of the group leader (Celery's prefork pool) may outlive it briefly.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Children:
    """The processes of one system under test, stopped together in reverse start order."""

    workdir: Path
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        _REGISTRY.append(self)

    def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path = REPO) -> Child:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(list(args), cwd=cwd, env=env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}; "
                                   f"see {child.log_path}")

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        if self in _REGISTRY:
            _REGISTRY.remove(self)


_REGISTRY: list[Children] = []


def stop_all() -> None:
    """Stop every process group any `Children` started (exit, Ctrl-C, SIGTERM)."""
    for group in list(reversed(_REGISTRY)):
        group.stop()


def install_handlers() -> None:
    """Ctrl-C and SIGTERM unwind the runner (so `finally` blocks stop the children)."""
    atexit.register(stop_all)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # A shell starts background jobs with SIGINT ignored; the runner wants Ctrl-C either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class RedisServer:
    """A private redis-server on a free loopback port (no persistence)."""

    children: Children
    port: int = 0

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make redis)")
        self.port = free_port()
        self.children.spawn("redis", [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir",
                                      str(self.children.workdir), "--loglevel", "warning"])
        client = self.client()

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(ping, 15, f"redis-server on port {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (`INFO commandstats`), e.g. {"brpop": 120, ...}."""
        info = self.client().info("commandstats")
        return {key.removeprefix("cmdstat_"): int(value["calls"])
                for key, value in info.items() if isinstance(value, dict)}
