"""A real redis-server on a free loopback port, one per test session.

Tests that need Redis take the `redis_url` fixture, which flushes the database first so that
no test sees another's keys.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.waiting import free_port, wait_until

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url", "wait_until"]


@dataclass
class RedisServer:
    """A redis-server process we started; `restart()` keeps the port (and the data if persisted)."""

    port: int
    workdir: Path
    password: str | None = None
    appendonly: bool = False
    unixsocket: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        # A socket path must fit in 108 bytes; pytest's tmp paths may not.
        return Path(tempfile.gettempdir()) / f"redis-{self.port}.sock"

    @property
    def socket_url(self) -> str:
        """The socket as Celery (kombu) reads it; the config accepts only this form."""
        return f"redis+socket://{self.socket_path}?virtual_host=0"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no", "--loglevel", "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unixsocket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_until(ping, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="pvebal-redis-") as workdir:
        server = RedisServer(port=free_port(), workdir=Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """`make(password=None, appendonly=False) -> RedisServer`: an extra redis-server for one
    test (e.g. with `requirepass`, or AOF persistence to survive `restart()`), stopped at
    teardown."""
    started: list[RedisServer] = []

    def make(password: str | None = None, appendonly: bool = False,
             unixsocket: bool = False) -> RedisServer:
        workdir = tmp_path / f"redis{len(started)}"
        workdir.mkdir()
        server = RedisServer(port=free_port(), workdir=workdir, password=password,
                             appendonly=appendonly, unixsocket=unixsocket)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, flushed for this test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url
