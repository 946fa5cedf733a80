"""Issue 19: `redis.url` accepts what Celery's Redis transport and the state store both read,
and refuses the rest with the fix. A worker and beat on a Redis reached through its unix
socket (`redis+socket://`, kombu's form) run cycles end to end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from balancer.config import ConfigError, parse_config
from balancer.state import StateStore
from balancer.state.store import redis_py_url
from tests.runtime.scenarios import BALANCED
from tests.support.waiting import wait_until


def config_with(url: str) -> Any:
    return parse_config({"proxmox": {"hosts": ["pve1"], "user": "b@pve", "token_name": "b",
                                     "token_value": "t"}, "redis": {"url": url}}, env={})


@pytest.mark.parametrize("url", [
    "redis://localhost:6379/0", "redis://:p%40ss@10.0.0.5:6380/2",
    "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required",
    "rediss://redis.example/0?ssl_cert_reqs=none&ssl_ca_certs=/etc/ssl/ca.pem",
    "redis+socket:///run/redis/redis.sock", "redis+socket:///run/redis/redis.sock?virtual_host=3",
])
def test_urls_celery_and_the_state_store_both_read_are_accepted(url: str) -> None:
    assert config_with(url).redis.url.reveal() == url


@pytest.mark.parametrize(("url", "fix"), [
    ("unix:///run/redis/redis.sock", "write redis+socket:///run/redis/redis.sock"),
    ("rediss://:hunter2@redis.example:6380/0", "needs ?ssl_cert_reqs=required"),
    ("rediss://:hunter2@redis.example/0?ssl_cert_reqs=CERT_REQUIRED",
     "ssl_cert_reqs must be one of required, optional, none"),
    ("sentinel://:hunter2@s1:26379", "Sentinel and cluster URLs are not supported"),
    ("localhost:6379", "expected a redis://, rediss:// or redis+socket:// URL"),
    ("redis://:hunter2/x@127.0.0.1:6379/0", "percent-encode it (%2F, %3F, %23)"),
])
def test_other_urls_are_refused_with_the_fix_and_without_the_password(url: str,
                                                                       fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_with(url)
    assert fix in str(err.value) and "hunter2" not in str(err.value)


def test_the_socket_form_is_translated_for_redis_py() -> None:
    assert redis_py_url("redis+socket:///run/r.sock?virtual_host=3") == "unix:///run/r.sock?db=3"
    assert redis_py_url("redis://h:1/0") == "redis://h:1/0"


@pytest.mark.integration
def test_worker_and_beat_run_cycles_over_a_unix_socket(
    pvesim_factory: Callable[..., Any], deployment_factory: Callable[..., Any],
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory(unixsocket=True)
    running = pvesim_factory(BALANCED, speed=10.0)
    deployment = deployment_factory(running, redis=server.socket_url)
    deployment.start_worker()
    deployment.start_beat()
    store = StateStore.from_url(server.socket_url)
    wait_until(lambda: store.liveness.last() is not None and store.history.last_decision(),
               timeout=60, what="a cycle over the unix socket")
    assert store.client.connection_pool.connection_kwargs["path"] == str(server.socket_path)
    status = deployment.cli("status")
    assert status.returncode == 0 and "last evaluate:" in status.stdout, status.stderr


def test_a_password_with_a_slash_is_still_redacted() -> None:
    from balancer.config import redact_url

    assert redact_url("redis://:ab/cd+ef@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://u:p#w@h/0?ssl_cert_reqs=none") == \
        "rediss://u:***@h/0?ssl_cert_reqs=none"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
