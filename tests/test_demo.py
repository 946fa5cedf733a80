"""`make demo` end to end: the demo settles the demo cluster and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of processes whose arguments or environment mention `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append(cmdline)
    return found


def test_demo_relieves_both_hot_nodes_and_stops_everything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--exit-when-settled", "--timeout", "240",
         "--table-every", "1000"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("BALANCER_CONFIG", "REDIS_URL")},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Flower: http://127.0.0.1:" in out
    assert "[memory]" in out and "[cpu]" in out, "both the memory and the CPU hot spot acted on"
    assert "succeeded" in out and "failed" not in out
    assert "cluster settled" in out
    # Redis and beat name .demo/ in their arguments; worker and Flower in $BALANCER_CONFIG.
    assert processes_mentioning(str(REPO / ".demo")) == []
