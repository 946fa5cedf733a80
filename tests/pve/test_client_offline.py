"""Client behaviour that needs no PVE at all: nobody listening, construction, cache sharing."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from balancer.cache import MemoryCache
from balancer.config import ProxmoxConfig, Secret
from balancer.pve.client import PveClient
from balancer.pve.errors import PveUnreachable

TOKEN = "5ec12e7a-0000-4000-8000-00000000abcd"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(*hosts: str, verify_ssl: bool = False) -> ProxmoxConfig:
    return ProxmoxConfig(hosts=tuple(hosts), user="balancer@pve", token_name="balancer",
                         token_value=Secret(TOKEN), verify_ssl=verify_ssl,
                         timeout_seconds=2.0)


def test_all_hosts_down_is_unreachable_after_bounded_retries() -> None:
    hosts = (f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}")
    sleeps: list[float] = []
    client = PveClient(config(*hosts), sleep=sleeps.append, max_attempts=3, backoff_base=0.5,
                       backoff_cap=1.5)
    with pytest.raises(PveUnreachable) as info:
        client.get("cluster/resources")
    message = str(info.value)
    assert message.startswith(f"no PVE host answered; tried: {hosts[0]}, {hosts[1]} (")
    assert message == (f"no PVE host answered; tried: {hosts[0]}, {hosts[1]} "
                       f"({hosts[0]}: connection refused (x3); "
                       f"{hosts[1]}: connection refused (x3))")
    assert TOKEN not in message
    assert len(info.value.failures) == 6  # 3 rounds x 2 hosts, then give up
    assert client.api_calls == 6
    # exponential backoff with jitter in [0.5, 1.0] x base * 2^n, capped
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_insecure_tls_is_warned_at_construction(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="balancer.pve.client"):
        PveClient(config("pve1"))
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="balancer.pve.client"):
        PveClient(config("pve1", verify_ssl=True))
    assert not caplog.records


def test_ca_bundle_is_passed_as_verify(tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    cfg = ProxmoxConfig(hosts=("pve1",), user="u@pve", token_name="t",
                        token_value=Secret(TOKEN), verify_ssl=True, ca_bundle=str(bundle))
    client = PveClient(cfg)
    api = client._api("pve1")
    assert api._store["session"].auth.verify_ssl == str(bundle)


def test_cache_entries_older_than_ttl_by_our_clock_are_refetched() -> None:
    now = [1000.0]
    client = PveClient(config("pve1"), MemoryCache(), clock=lambda: now[0], tasks_ttl=10.0)
    fetched: list[str] = []

    def fake_get(path: str, /, **params: Any) -> Any:
        fetched.append(path)
        return [{"n": len(fetched)}]

    client.get = fake_get  # type: ignore[method-assign]
    assert client.cluster_tasks_payload() == [{"n": 1}]
    now[0] += 9.9
    assert client.cluster_tasks_payload() == [{"n": 1}]
    now[0] += 0.2
    assert client.cluster_tasks_payload() == [{"n": 2}]
    assert fetched == ["cluster/tasks", "cluster/tasks"]


class BrokenCache:
    def get(self, key: str) -> Any:
        raise ConnectionError("redis is down")

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        raise ConnectionError("redis is down")

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        raise ConnectionError("redis is down")


def test_broken_cache_falls_back_to_fresh_reads() -> None:
    client = PveClient(config("pve1"), BrokenCache())
    client.get = lambda path, /, **params: {"crs": "ha=static"}  # type: ignore[method-assign]
    client.prefetch_cached()
    assert client.cluster_options().crs == {"ha": "static"}


class CountingCache(MemoryCache):
    def __init__(self) -> None:
        super().__init__()
        self.single_reads = 0
        self.batches: list[list[str]] = []

    def get(self, key: str) -> Any | None:
        self.single_reads += 1
        return super().get(key)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        self.batches.append(keys)
        return {k: v for k in keys if (v := MemoryCache.get(self, k)) is not None}


def test_one_round_trip_reads_every_cached_payload_once() -> None:
    cache = CountingCache()
    client = PveClient(config("pve1"), cache, clock=lambda: 100.0)
    fetched: list[str] = []

    def get(path: str, /, **params: Any) -> Any:
        fetched.append(path)
        return {"crs": "ha=static"}

    client.get = get  # type: ignore[method-assign]
    client.cluster_options_payload()
    client.prefetch_cached()
    cache.single_reads = 0
    assert client.cluster_options().crs == {"ha": "static"}
    assert fetched == ["cluster/options"], "served from the prefetched entry"
    assert cache.single_reads == 0 and len(cache.batches) == 1 and len(cache.batches[0]) == 4
    client.cluster_options()
    assert cache.single_reads == 1, "a prefetched entry is used once"


def test_no_error_text_carries_the_authorization_header() -> None:
    """requests quotes a refused header value in its exception text (issue 20.5)."""
    client = PveClient(ProxmoxConfig(hosts=("pve1:8006",), user="balancer@pve",
                                     token_name="balancer", token_value=Secret("s3cr3t-uuid")))
    quoted = ("Invalid leading whitespace, reserved character(s), or return character(s) in "
              "header value: b'PVEAPIToken=balancer@pve!balancer=s3cr3t-uuid\\n'")
    scrubbed = client._scrub(quoted)
    assert "s3cr3t" not in scrubbed and "PVEAPIToken=***" in scrubbed
