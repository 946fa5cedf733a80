"""Whole-cluster scenarios kept as data (tests/engine/scenarios/*.yaml), Watcher-style."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from balancer.engine import CpuReading, decide

from .builders import config, engine_input, node, snapshot, vm

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


def load(path: Path) -> tuple[Any, dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    snap = snapshot([node(**n) for n in data["nodes"]],
                    [vm(**{**g, "tags": g.get("tags", ())}) for g in data.get("guests", [])],
                    **data.get("snapshot", {}))
    cpu = ({name: CpuReading(*reading) for name, reading in data["cpu"].items()}
           if "cpu" in data else None)
    inp = engine_input(snap, cpu=cpu, blocked=data.get("blocked"),
                       cfg=config(**data.get("config", {})), seed=data.get("seed", 0))
    return inp, data["expect"]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    inp, expect = load(path)
    decision = decide(inp)
    result = decision.to_dict()
    for key in ("action", "vmid", "source", "target", "reason"):
        if key in expect:
            assert result[key] == expect[key], f"{key}: {decision.explanation}"
    for line in expect.get("lines", []):
        assert any(line in text for text in decision.explanation), \
            f"{line!r} not in {decision.explanation}"
    for vmid, targets in expect.get("verdicts", {}).items():
        (verdict,) = [c for c in decision.candidates if c.vmid == vmid]
        found = {t.node: t.rejection.rule for t in verdict.targets if t.rejection}
        assert found == targets


def test_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 5
