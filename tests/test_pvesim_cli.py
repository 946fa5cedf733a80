"""`python -m pvesim`: one ready line on stdout, then serves until SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from proxmoxer import ProxmoxAPI

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"^pvesim ready https://127\.0\.0\.1:(\d+) user=(\S+) token_name=(\S+)$")

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def test_cli_prints_ready_line_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pvesim", "--scenario", "config/scenarios/balanced.yaml",
         "--port", "0", "--speed", "10"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().rstrip("\n")  # blocks until ready (or exit)
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}"
        port, user, token_name = int(match.group(1)), match.group(2), match.group(3)
        assert (user, token_name) == ("balancer@pve", "balancer")
        assert "0000-4000" not in line  # the secret is never printed
        prox = ProxmoxAPI(
            f"127.0.0.1:{port}",
            user=user,
            token_name=token_name,
            token_value="00000000-0000-4000-8000-000000000000",
            verify_ssl=False,
        )
        assert len(prox.nodes.get()) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_a_broken_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{name: pve1, memroy_gib: 4}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "pvesim", "--scenario", str(bad), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown key(s): memroy_gib" in result.stderr
