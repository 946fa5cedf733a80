"""The operator's CLI against the simulator and a real Redis: plan, check, status, history.

Commands run in-process through `balancer.cli.main`, exactly as the console script does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from balancer.cli import EXIT_OK, EXIT_UNAVAILABLE, main
from balancer.cli.common import EXIT_USAGE
from balancer.exporter import make_registry
from balancer.runtime import evaluate
from balancer.state import StateStore
from tests.runtime.scenarios import CPU_HOT, cluster, vm
from tests.support.celery_worker import write_config
from tests.support.steps import StepDispatcher, evaluate_until_migrate, runtime_for
from tests.support.waiting import free_port, wait_until

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def hot_cluster(pvesim_factory: Callable[..., Any], tmp_path: Path, redis_url: str,
                monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    running = pvesim_factory(CPU_HOT, speed=10.0)
    config_path = tmp_path / "balancer.yaml"
    write_config(config_path, running.host_port, running.user, running.token_name, redis_url)
    monkeypatch.setenv("PVE_TOKEN_VALUE", running.token_value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return running, config_path


def test_plan_json_shows_the_decision_and_why(cli: Cli, hot_cluster: tuple[Any, Path]) -> None:
    running, config_path = hot_cluster
    code, out, _ = cli("--config", str(config_path), "plan", "--json")
    assert code == EXIT_OK
    plan = json.loads(out)
    assert (plan["action"], plan["vmid"], plan["source"], plan["target"], plan["reason"]) == (
        "migrate", 202, "pve1", "pve3", "cpu")
    assert plan["explanation"][0].startswith("migrate vm 202")
    assert any("busiest" in line for line in plan["explanation"])
    assert any("using the current measurement" in note for note in plan["notes"])
    assert running.sim.migration_log == [], "plan never migrates"


def test_plan_on_a_saved_snapshot_decides_the_same(cli: Cli, hot_cluster: tuple[Any, Path],
                                                   tmp_path: Path) -> None:
    _, config_path = hot_cluster
    saved = tmp_path / "snap.json"
    code, live, _ = cli("--config", str(config_path), "plan", "--json", "--save-snapshot",
                        str(saved))
    assert code == EXIT_OK and saved.exists()
    code, offline, _ = cli("--config", str(config_path), "plan", "--json", "--snapshot",
                           str(saved))
    assert code == EXIT_OK
    keys = ("action", "vmid", "source", "target", "reason")
    assert [json.loads(offline)[k] for k in keys] == [json.loads(live)[k] for k in keys]


def test_plan_text_prints_the_explanation(cli: Cli, hot_cluster: tuple[Any, Path]) -> None:
    _, config_path = hot_cluster
    code, out, _ = cli("--config", str(config_path), "plan")
    assert code == EXIT_OK
    assert out.splitlines()[0].startswith("migrate vm 202 (vm202) pve1 -> pve3 [cpu]")


def test_check_summarises_the_cluster(cli: Cli, hot_cluster: tuple[Any, Path]) -> None:
    running, config_path = hot_cluster
    code, out, err = cli("--config", str(config_path), "check")
    assert code == EXIT_OK, out + err
    assert "privilege VM.Migrate on /vms: ok" in out
    assert "cluster rt: quorate, 3/3 nodes online" in out
    assert "Redis: redis://127.0.0.1:" in out and "no evaluate recorded yet" in out
    assert out.rstrip().endswith("check OK")
    assert running.token_value not in out + err


def test_check_without_redis_is_unavailable_and_says_why(
        cli: Cli, hot_cluster: tuple[Any, Path]) -> None:
    _, config_path = hot_cluster
    doc = yaml.safe_load(config_path.read_text())
    doc["redis"]["url"] = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    config_path.write_text(yaml.safe_dump(doc))
    code, out, err = cli("--config", str(config_path), "check")
    assert code == EXIT_UNAVAILABLE
    assert "cluster rt: quorate" in out, "PVE is still checked and reported"
    assert "PROBLEM: Redis at redis://:***@127.0.0.1:" in out and "not reachable" in out
    assert "hunter2" not in out + err and "check OK" not in out


def test_check_with_a_wrong_token_names_user_and_host_not_the_secret(
    cli: Cli, hot_cluster: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, config_path = hot_cluster
    monkeypatch.setenv("PVE_TOKEN_VALUE", "wrong-secret-value")
    code, out, err = cli("--config", str(config_path), "check")
    assert code == EXIT_UNAVAILABLE
    text = out + err
    assert f"authentication failed for balancer@pve!balancer on host {running.host_port}" in text
    assert "wrong-secret-value" not in text


def test_status_without_redis_exits_unavailable(cli: Cli, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "b.yaml"
    write_config(config_path, "127.0.0.1:8006", "balancer@pve", "balancer",
                 f"redis://:sekret@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("PVE_TOKEN_VALUE", "x")
    code, out, err = cli("--config", str(config_path), "status")
    assert code == EXIT_UNAVAILABLE
    assert "is not reachable" in err and "sekret" not in out + err


def run_one_migration(running: Any, redis_url: str) -> StateStore:
    """Evaluate until a migration is decided, then drive migrate and poll to the end."""
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()

    def evaluated_to_migrate() -> bool:
        running.sim.advance(rt.config.balancing.interval_seconds * 10)
        return evaluate(rt, dispatch).action == "migrate"

    wait_until(evaluated_to_migrate, timeout=30, interval=0.01, what="a migrate decision")
    while dispatch.pending:
        running.sim.advance(5)
        dispatch.run(rt, dispatch.pending.pop(0))
    return rt.store


def test_status_and_history_after_a_migration(cli: Cli, hot_cluster: tuple[Any, Path],
                                              redis_url: str) -> None:
    running, config_path = hot_cluster
    store = run_one_migration(running, redis_url)
    assert store.lock.holder() is None

    code, out, _ = cli("--config", str(config_path), "status")
    assert code == EXIT_OK
    assert "migration lock: free" in out
    assert "pve1" in out and "cooldown" in out
    assert "migrate vm 202" in out
    # The move left pve1 under cpu_max: it settles (the CPU hysteresis) until its average
    # leaves the band; pve3 received the VM and is an ordinary node.
    [pve1_line] = [line for line in out.splitlines() if line.startswith("pve1 ")]
    assert "settling" in pve1_line
    code, out, _ = cli("--config", str(config_path), "status", "--json")
    nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
    assert nodes["pve1"]["cpu_settling"] is True and "settling" in nodes["pve1"]["badges"]
    assert nodes["pve3"]["cpu_settling"] is False and "settling" not in nodes["pve3"]["badges"]

    code, out, _ = cli("--config", str(config_path), "history", "--json")
    assert code == EXIT_OK
    (row,) = json.loads(out)
    assert (row["vmid"], row["source"], row["target"], row["outcome"]) == (
        202, "pve1", "pve3", "succeeded")
    assert row["upid"].startswith("UPID:pve1:") and row["duration"] is not None
    code, out, _ = cli("--config", str(config_path), "history")
    assert "pve1 -> pve3" in out and "succeeded" in out


@pytest.mark.parametrize("command", ["check-config", "check", "plan", "status", "history",
                                     "pause", "resume", "drain", "undrain", "drains", "web",
                                     "exporter"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) >= 3


def test_a_rule_that_cannot_be_repaired_shows_in_plan_status_and_metrics(
        cli: Cli, pvesim_factory: Callable[..., Any], tmp_path: Path, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: vm 700 is pinned to pve3, which has no memory left for it: never forced,
    always reported."""
    scenario = cluster([vm(700, "pve1", 2, 0.2, 8, tags=["plb_pin_pve3"]),
                        vm(701, "pve3", 2, 0.2, 56, mem_gib=52)])
    running = pvesim_factory(scenario, speed=10.0)
    config_path = tmp_path / "balancer.yaml"
    write_config(config_path, running.host_port, running.user, running.token_name, redis_url)
    monkeypatch.setenv("PVE_TOKEN_VALUE", running.token_value)
    monkeypatch.delenv("REDIS_URL", raising=False)

    code, out, _ = cli("--config", str(config_path), "plan", "--json")
    plan = json.loads(out)
    assert code == EXIT_OK and plan["action"] == "none"
    assert plan["violations"] == [{"rule": "pin", "label": "its pinned nodes pve3",
                                   "node": "pve1", "vmids": [700],
                                   "text": "vm 700 runs on pve1, outside its pinned nodes pve3"}]
    assert "rule: cannot repair vm 700" in plan["explanation"][0]

    rt = runtime_for(running, redis_url)
    assert evaluate(rt, StepDispatcher()).violations == tuple(plan["violations"])
    code, out, _ = cli("--config", str(config_path), "status")
    assert "pin: vm 700 runs on pve1, outside its pinned nodes pve3" in out
    body = generate_latest(make_registry(rt.store)).decode()
    assert 'pve_balancer_rule_violations{cluster="rt",rule="pin"} 1.0' in body
    assert 'pve_balancer_rule_violations{cluster="rt",rule="anti_affinity"} 0.0' in body
    assert running.sim.migration_log == []


def test_pause_holds_back_moves_and_resume_lets_them_go(
        cli: Cli, hot_cluster: tuple[Any, Path], redis_url: str) -> None:
    """Issue 17: paused, evaluate still reads and says why it moves nothing; a migrate
    message decided before the pause starts nothing; status and the metrics show it."""
    running, config_path = hot_cluster
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()
    decision = evaluate_until_migrate(rt, dispatch)  # decided before the pause ...
    code, out, _ = cli("--config", str(config_path), "pause", "--for", "1h",
                       "--reason", "backup window")
    assert code == EXIT_OK and out.startswith("paused by ") and "backup window" in out
    step = dispatch.take("migrate")
    aborted = dispatch.run(rt, step)  # ... is not started once paused
    assert aborted.state == "aborted" and "paused by" in (aborted.outcome or "")
    rt.store.marks.clear(decision.vmid, "cooldown")
    skipped = evaluate(rt, dispatch)
    assert (skipped.action, skipped.skip) == ("skipped", "paused")
    assert skipped.reason is not None and "backup window" in skipped.reason
    assert dispatch.pending == [] and running.sim.migration_log == []

    code, out, _ = cli("--config", str(config_path), "status", "--json")
    assert json.loads(out)["paused"]["reason"] == "backup window"
    body = generate_latest(make_registry(rt.store)).decode()
    assert 'pve_balancer_paused{cluster="rt"} 1.0' in body

    code, out, _ = cli("--config", str(config_path), "resume")
    assert (code, out.strip()) == (EXIT_OK, "resumed")
    resumed = evaluate_until_migrate(rt, dispatch)
    assert resumed.action == "migrate"
    assert 'pve_balancer_paused{cluster="rt"} 0.0' in generate_latest(
        make_registry(rt.store)).decode()


def test_a_bad_pause_duration_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("pause", "--for", "soon")
    assert code == EXIT_USAGE and "use e.g. 90s, 30m, 2h" in err


def test_config_before_or_after_the_command_and_version(cli: Cli) -> None:
    """Issue 17: as people type it."""
    example = str(Path(__file__).resolve().parents[1] / "config" / "balancer.yaml.example")
    before = cli("--config", example, "check-config", "--json")
    after = cli("check-config", "--json", "--config", example)
    assert before[0] == after[0] == EXIT_OK and before[1] == after[1]
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_a_missing_snapshot_file_is_a_usage_error_not_a_config_error(
        cli: Cli, tmp_path: Path) -> None:
    example = str(Path(__file__).resolve().parents[1] / "config" / "balancer.yaml.example")
    code, _, err = cli("--config", example, "plan", "--snapshot", str(tmp_path / "none.json"))
    assert code == EXIT_USAGE and err.startswith("error: cannot read snapshot ")


def test_drain_lists_what_cannot_leave_and_a_late_drain_stops_a_move_onto_the_node(
        cli: Cli, pvesim_factory: Callable[..., Any], tmp_path: Path, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: a VM pinned to its drained node is listed with its reason, never forced;
    `drains`, `status` and `pve_balancer_node_drained` show the drain; a move decided before
    its target was drained is not started; an unknown node is a usage error."""
    scenario = cluster([vm(500, "pve3", 2, 0.2, 4, tags=["plb_pin_pve3"]),
                        vm(501, "pve3", 2, 0.2, 4)])
    running = pvesim_factory(scenario, speed=10.0)
    config_path = tmp_path / "balancer.yaml"
    write_config(config_path, running.host_port, running.user, running.token_name, redis_url)
    monkeypatch.setenv("PVE_TOKEN_VALUE", running.token_value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()
    assert evaluate(rt, dispatch).action == "none"  # publishes the node list

    code, _, err = cli("--config", str(config_path), "drain", "pve9")
    assert code == EXIT_USAGE and "no node 'pve9' in the cluster (nodes: pve1, pve2, pve3)" in err
    code, out, _ = cli("--config", str(config_path), "drain", "pve3", "--reason", "psu")
    assert code == EXIT_OK and out.startswith("draining pve3 by ")

    moved = evaluate(rt, dispatch)
    assert (moved.action, moved.vmid, moved.reason) == ("migrate", 501, "drain")
    # The operator drains the chosen target before the migrate task runs: nothing starts.
    assert moved.target is not None
    cli("--config", str(config_path), "drain", moved.target)
    aborted = dispatch.run(rt, dispatch.take("migrate"))
    assert aborted.state == "aborted" and f"target {moved.target} was drained" in (
        aborted.outcome or "")
    assert running.sim.migration_log == []
    cli("--config", str(config_path), "undrain", moved.target)
    rt.store.marks.clear(501, "backoff")
    rt.store.marks.clear(501, "cooldown")

    moved = evaluate(rt, dispatch)
    assert (moved.action, moved.vmid) == ("migrate", 501)
    while dispatch.pending:  # migrate, then poll until PVE's task ends
        running.sim.advance(5)
        dispatch.run(rt, dispatch.pending.pop(0))
    assert running.sim.guest(501).node != "pve3"
    stuck = evaluate(rt, dispatch)
    assert stuck.action == "none"
    [progress] = stuck.drains
    assert (progress["state"], progress["running"]) == ("stuck", 1)
    assert [(s["vmid"], s["why"]) for s in progress["stuck"]] == [
        (500, "no valid target: 2 pinned")]

    code, out, _ = cli("--config", str(config_path), "drains")
    assert "pve3" in out and "stuck" in out
    assert "pve3: vm 500 (vm500) cannot leave: no valid target: 2 pinned" in out
    code, out, _ = cli("--config", str(config_path), "status", "--json")
    assert [d["node"] for d in json.loads(out)["drains"]] == ["pve3"]
    body = generate_latest(make_registry(rt.store)).decode()
    assert 'pve_balancer_node_drained{cluster="rt",id="node/pve3",node="pve3"} 1.0' in body
    assert 'pve_balancer_node_drained{cluster="rt",id="node/pve1",node="pve1"} 0.0' in body
    assert running.sim.guest(500).node == "pve3"


@pytest.fixture
def not_pve(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server that is not PVE: 404 and an HTML page for every path."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pvesim.tls import server_context

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(tmp_path).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("command", [["check"], ["plan"], ["plan", "--json"]])
def test_a_host_that_is_not_pve_is_unavailable_for_every_command(
        cli: Cli, not_pve: str, tmp_path: Path, redis_url: str, command: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: PVE answers 501 for a path it does not know, never 404 (pve-http-server,
    `rest_handler`): a 404 means the host is not PVE, and every command says so, exit 4."""
    config_path = tmp_path / "balancer.yaml"
    write_config(config_path, not_pve, "balancer@pve", "balancer", redis_url)
    monkeypatch.setenv("PVE_TOKEN_VALUE", "secret-value")
    code, out, err = cli("--config", str(config_path), *command)
    assert code == EXIT_UNAVAILABLE, (out, err)
    assert "not a PVE API: HTTP 404" in out + err
    assert "secret-value" not in out + err


def test_an_untrusted_certificate_says_to_set_ca_bundle(
        cli: Cli, hot_cluster: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, config_path = hot_cluster
    doc = yaml.safe_load(config_path.read_text())
    doc["proxmox"]["verify_ssl"] = True
    config_path.write_text(yaml.safe_dump(doc))
    code, out, err = cli("--config", str(config_path), "plan")
    assert code == EXIT_UNAVAILABLE
    assert "set proxmox.ca_bundle to its CA, a copy of /etc/pve/pve-root-ca.pem" in out + err


def test_plan_shows_a_drain_first(cli: Cli, hot_cluster: tuple[Any, Path],
                                  redis_url: str) -> None:
    running, config_path = hot_cluster
    StateStore.from_url(redis_url).drains.set("pve3", "alice@admin1", "psu")
    code, out, _ = cli("--config", str(config_path), "plan", "--json")
    plan = json.loads(out)
    assert (code, plan["action"], plan["reason"], plan["source"]) == (
        EXIT_OK, "migrate", "drain", "pve3")
    assert [(d["node"], d["state"]) for d in plan["drains"]] == [("pve3", "moving")]
    assert running.sim.migration_log == [], "plan migrates nothing"


def test_a_drain_move_is_not_started_once_its_source_is_undrained(
        cli: Cli, hot_cluster: tuple[Any, Path], redis_url: str) -> None:
    running, config_path = hot_cluster
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()
    cli("--config", str(config_path), "drain", "pve3")
    moved = evaluate(rt, dispatch)
    assert (moved.action, moved.reason, moved.source) == ("migrate", "drain", "pve3")
    cli("--config", str(config_path), "undrain", "pve3")
    aborted = dispatch.run(rt, dispatch.take("migrate"))
    assert aborted.state == "aborted"
    assert "source pve3 was undrained after the decision" in (aborted.outcome or "")
    assert running.sim.migration_log == []
