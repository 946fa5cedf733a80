"""compose.yml, docker/ and the project must agree: commands, env vars, paths, ports, secrets.

Docker itself is not needed: the file is checked against the code (Celery app, CLI parser,
config constants); `docker compose config` runs too when a Compose v2 binary is available.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from balancer.cli import build_parser
from balancer.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    REDIS_URL_ENV,
    TOKEN_ENV,
    parse_config,
)
from balancer.exporter import DEFAULT_PORT, start_exporter
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / "docker" / "env.example"
DASHBOARD = ROOT / "docker" / "grafana-dashboard.json"
APP_SERVICES = ("worker", "beat", "flower", "exporter", "web")
#: Variables read by the project's code (balancer/config.py, balancer/web).
CODE_ENV = {CONFIG_ENV, TOKEN_ENV, REDIS_URL_ENV}
#: Read by one service of ours only.
SERVICE_ENV = {"WEB_BASIC_AUTH": "web"}
#: Variables read by third-party programs in the image, and who reads them.
THIRD_PARTY_ENV = {"FLOWER_BASIC_AUTH": "flower"}
#: `pve-balancer` subcommands compose uses that the CLI may not have yet (wired separately);
#: once the parser has them they are checked like any other.
DUMMY_SECRETS = {"PVE_TOKEN_VALUE": "tok", "REDIS_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "a:b",
                 "WEB_BASIC_AUTH": "c:d"}


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    svc = compose()["services"][name]
    assert isinstance(svc, dict)
    return svc


def command(name: str) -> list[str]:
    cmd = service(name)["command"]
    assert isinstance(cmd, list), f"{name}: use the exec (list) form of command"
    return [str(part) for part in cmd]


def interpolated(value: str) -> set[str]:
    """Names of `${VAR}`, `${VAR:-x}`, `${VAR:?msg}` references (`$$` is an escape)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", value))


def required(value: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", value))


def test_services() -> None:
    assert set(compose()["services"]) == {"redis", *APP_SERVICES}
    for name in compose()["services"]:
        assert service(name).get("restart") in ("unless-stopped", "always"), name


def test_one_image_built_from_the_dockerfile() -> None:
    images = {service(n)["image"] for n in APP_SERVICES}
    builds = {json.dumps(service(n)["build"], sort_keys=True) for n in APP_SERVICES}
    assert len(images) == 1 and len(builds) == 1
    build = service("worker")["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert DOCKERFILE.is_file()


def test_app_services_wait_for_a_healthy_redis() -> None:
    for name in APP_SERVICES:
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy", name


def celery_env(tmp_path: Path) -> dict[str, str]:
    """A config that loads (the committed example), as a container would see it."""
    config = tmp_path / "balancer.yaml"
    config.write_text((ROOT / "config" / "balancer.yaml.example").read_text())
    env = {k: v for k, v in os.environ.items() if k not in CODE_ENV}
    return {**env, CONFIG_ENV: str(config)}


def test_celery_commands_use_the_real_app(tmp_path: Path) -> None:
    env = celery_env(tmp_path)
    found = subprocess.run(
        [sys.executable, "-c", "import tasks; from celery import Celery; "
         "assert isinstance(tasks.app, Celery), tasks.app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    celery_services = [n for n in APP_SERVICES if command(n)[0] == "celery"]
    assert set(celery_services) == {"worker", "beat", "flower"}
    for name in celery_services:
        cmd = command(name)
        assert cmd[1:3] == ["-A", "tasks"], f"{name}: {cmd}"
        # --help after the real arguments: click still rejects an unknown subcommand or option.
        ran = subprocess.run([sys.executable, "-m", "celery", *cmd[1:], "--help"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, f"{name}: {' '.join(cmd)}\n{ran.stderr}"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_pve_balancer_commands_exist_in_the_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pve-balancer"] == "balancer.cli:main"
    parser = build_parser()
    known = subcommands(parser)
    used = [n for n in APP_SERVICES if command(n)[0] == "pve-balancer"]
    assert used == ["exporter", "web"]
    for name in used:
        args = command(name)[1:]
        sub = next(a for a in args if not a.startswith("-"))
        assert sub in known, f"{name}: no `pve-balancer {sub}`; known: {sorted(known)}"
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{name}: `pve-balancer {' '.join(args)}` does not parse ({exc})")


def test_exporter_port_is_published() -> None:
    cmd = command("exporter")
    port = int(cmd[cmd.index("--port") + 1])
    assert port == DEFAULT_PORT == 9108
    assert f"127.0.0.1:{port}:{port}" in service("exporter")["ports"], "loopback only"
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0", "reachable through the published port"


def test_env_vars_are_ones_the_code_reads() -> None:
    for name in APP_SERVICES:
        env = service(name)["environment"]
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        assert set(env) >= CODE_ENV, f"{name}: missing {CODE_ENV - set(env)}"
        for var in env:
            assert (var in CODE_ENV or var in THIRD_PARTY_ENV
                    or SERVICE_ENV.get(var) == name), f"{name}: nobody reads {var}"
        assert env[CONFIG_ENV] == DEFAULT_CONFIG_PATH
        url = env[REDIS_URL_ENV]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0", url), url
        assert required(env[TOKEN_ENV]) == {TOKEN_ENV}, "the PVE token comes from .env"
    assert THIRD_PARTY_ENV["FLOWER_BASIC_AUTH"] == "flower"
    from flower.command import ENV_VAR_PREFIX

    assert "FLOWER_BASIC_AUTH".startswith(ENV_VAR_PREFIX)  # flower maps FLOWER_X to --x
    dockerfile = DOCKERFILE.read_text()
    assert re.search(rf"^\s*{CONFIG_ENV}={re.escape(DEFAULT_CONFIG_PATH)}\b", dockerfile,
                     re.MULTILINE), "Dockerfile must set BALANCER_CONFIG"


def test_every_required_secret_is_documented() -> None:
    text = COMPOSE.read_text()
    needed = required(text)
    assert needed == {"PVE_TOKEN_VALUE", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "WEB_BASIC_AUTH"}
    example = ENV_EXAMPLE.read_text()
    documented = dict(re.findall(r"^([A-Z_]+)=(.*)$", example, re.MULTILINE))
    assert needed <= set(documented)
    for var in needed:
        assert documented[var] == "", f"{var}: the example must not ship a usable secret"
    optional = interpolated(text) - needed
    for var in optional:
        assert re.search(rf"\$\{{{var}:-[^}}]+\}}", text), f"{var} needs a default"
        assert var in example, f"{var} is not mentioned in docker/env.example"


def test_config_is_mounted_read_only() -> None:
    for name in APP_SERVICES:
        mounts = [v for v in service(name)["volumes"]
                  if isinstance(v, dict) and v.get("target") == DEFAULT_CONFIG_PATH]
        assert len(mounts) == 1, f"{name}: config not mounted at {DEFAULT_CONFIG_PATH}"
        mount = mounts[0]
        assert mount["type"] == "bind" and mount["read_only"] is True, name
        assert mount["source"] == "./config/balancer.yaml", name
    assert (ROOT / "config" / "balancer.yaml.example").is_file()


def test_redis_persists_requires_a_password_and_has_a_healthcheck() -> None:
    redis = service("redis")
    assert str(redis["image"]).startswith("redis:")
    cmd = " ".join(command("redis"))
    assert "--appendonly yes" in cmd
    assert '--requirepass "$$REDIS_PASSWORD"' in cmd  # resolved in the container, not inspect
    # Through the image's entrypoint, which drops root (a bare `exec redis-server` kept it).
    assert "exec docker-entrypoint.sh redis-server" in cmd
    assert "ports" not in redis, "Redis must not be published outside the compose network"
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose()["volumes"]
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in test and "ping" in test
    assert "REDISCLI_AUTH" in test or " -a " in test, "the healthcheck must authenticate"
    assert required(redis["environment"]["REDIS_PASSWORD"]) == {"REDIS_PASSWORD"}


def test_flower_has_basic_auth_on_5555() -> None:
    flower = service("flower")
    cmd = command("flower")
    assert "--port=5555" in cmd
    assert "127.0.0.1:5555:5555" in flower["ports"], "loopback only"
    assert "--address=0.0.0.0" in cmd, "reachable through the published port"
    assert required(flower["environment"]["FLOWER_BASIC_AUTH"]) == {"FLOWER_BASIC_AUTH"}
    assert "FLOWER_BASIC_AUTH" not in service("worker")["environment"]


def test_web_has_basic_auth_on_loopback_8108() -> None:
    from balancer.web import AUTH_ENV

    web = service("web")
    cmd = command("web")
    assert cmd[:2] == ["pve-balancer", "web"]
    assert cmd[cmd.index("--port") + 1] == "8108" and "127.0.0.1:8108:8108" in web["ports"]
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0", "reachable through the published port"
    assert required(web["environment"][AUTH_ENV]) == {AUTH_ENV}
    assert AUTH_ENV not in service("worker")["environment"]


def test_healthchecks_use_the_script_the_image_installs() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert "COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/pve-balancer-healthcheck" \
        in dockerfile
    assert "HEALTHCHECK" in dockerfile
    for name, url in (("flower", "http://127.0.0.1:5555/healthcheck"),
                      ("exporter", f"http://127.0.0.1:{DEFAULT_PORT}/metrics"),
                      ("web", "http://127.0.0.1:8108/healthz")):
        test = service(name)["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/usr/local/bin/pve-balancer-healthcheck"], name
        assert test[3:] == ["--url", url], name


def test_dockerfile_installs_runtime_only_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    version = re.search(r"ARG PYTHON_VERSION=3\.(\d+)", text)
    assert version and int(version.group(1)) >= 11
    assert re.search(r"FROM python:\$\{PYTHON_VERSION\}-slim", text)
    assert "pip install --no-deps -r requirements.lock" in text, "the image installs the lock"
    assert "pip install --no-deps ." in text and "pip check" in text
    assert "[test]" not in text.replace("no [test] extra", "")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore is an allowlist"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"pyproject.toml", "requirements.lock", "balancer", "tasks",
            "docker/healthcheck.py"} <= allowed
    assert not allowed & {".env", "config", "tests", ".git", ".venv", "pvesim", "demo"}


def test_dashboard_is_valid_and_uses_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("pve_balancer_node_cpu_ema", "pve_balancer_node_memory_ratio",
                   "pve_balancer_decisions_total", "pve_balancer_migrations_total",
                   "pve_balancer_migration_duration_seconds_bucket",
                   "pve_balancer_evaluate_duration_seconds_bucket",
                   "pve_balancer_skipped_cycles_total", "pve_balancer_lock_held"):
        assert metric in exprs, metric


# --- docker compose itself, when this machine has it ---------------------------------------

def compose_binary() -> list[str] | None:
    """`docker compose` (plugin) or a standalone Compose v2 `docker-compose`, if either runs."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for candidate in candidates:
        if shutil.which(candidate[0]) is None:
            continue
        try:
            version = subprocess.run([*candidate, "version", "--short"], capture_output=True,
                                     text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return candidate
    return None


def run_compose(args: list[str], secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no Compose v2 here (`docker compose` / `docker-compose`): "
                    "compose.yml is checked statically only")
    env = {k: v for k, v in os.environ.items()
           if k not in DUMMY_SECRETS and k != "PVE_BALANCER_TAG"}
    env.update(secrets)
    return subprocess.run([*binary, "-f", str(COMPOSE), "--project-directory", str(ROOT),
                           "--env-file", os.devnull, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_docker_compose_config_is_valid() -> None:
    ran = run_compose(["config", "-q"], DUMMY_SECRETS)
    assert ran.returncode == 0, ran.stderr
    resolved = run_compose(["config", "--format", "json"], DUMMY_SECRETS)
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    assert services["worker"]["environment"][REDIS_URL_ENV] == "redis://:pw@redis:6379/0"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "a:b"


def test_docker_compose_refuses_to_start_without_secrets() -> None:
    ran = run_compose(["config", "-q"], {})
    assert ran.returncode != 0
    assert "docker/env.example" in ran.stderr


# --- the image's health check script ----------------------------------------------------------

def healthcheck(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = celery_env(tmp_path)
    env[REDIS_URL_ENV] = redis_url
    return subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_healthcheck_pings_the_configured_redis(tmp_path: Path, redis_url: str) -> None:
    ok = healthcheck(tmp_path, redis_url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("healthy: redis")


def test_healthcheck_fails_after_three_intervals_without_an_evaluate(
        tmp_path: Path, redis_url: str) -> None:
    """Issue 20: liveness. The example config's interval is 5 s: 3 intervals are 15 s."""
    from balancer.state import StateStore

    store = StateStore.from_url(redis_url)
    store.liveness.stamp("none", now=store.clock() - 5)
    fresh = healthcheck(tmp_path, redis_url)
    assert fresh.returncode == 0 and "last evaluate " in fresh.stdout, fresh.stdout
    store.liveness.stamp("skipped", now=store.clock() - 16)
    stale = healthcheck(tmp_path, redis_url)
    assert stale.returncode == 1
    # The age is read when the check runs: 16 s plus however long it took to start.
    found = re.match(r"unhealthy: no evaluate for (\d+)s \(more than 3 intervals of 5s\)",
                     stale.stderr)
    assert found is not None and int(found.group(1)) >= 16, stale.stderr


def test_healthcheck_fails_without_redis_and_hides_the_password(tmp_path: Path) -> None:
    down = healthcheck(tmp_path, f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    assert down.returncode == 1
    assert "unhealthy: redis redis://:***@127.0.0.1" in down.stderr
    assert "hunter2-secret" not in down.stdout + down.stderr


def test_healthcheck_fails_on_a_bad_config(tmp_path: Path, redis_url: str) -> None:
    env = celery_env(tmp_path)
    Path(env[CONFIG_ENV]).write_text("proxmox: {}\n")
    bad = subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "unhealthy: config error" in bad.stderr


def test_healthcheck_url_mode(tmp_path: Path, redis_url: str) -> None:
    config = parse_config({"proxmox": {"hosts": ["pve1"], "user": "u@pve", "token_name": "t",
                                       "token_value": "v"}, "redis": {"url": redis_url}},
                          env={})
    exporter = start_exporter(config, port=0, addr="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        ok = healthcheck(tmp_path, redis_url, "--url", url)
    finally:
        exporter.close()
    assert ok.returncode == 0, ok.stderr
    gone = healthcheck(tmp_path, redis_url, "--url", url)
    assert gone.returncode == 1 and gone.stderr.startswith("unhealthy:")
