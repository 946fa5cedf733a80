"""`pve-balancer pause --for DURATION` reads durations as people type them (issue 17)."""

from __future__ import annotations

import pytest

from balancer.cli.pause import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400),
    (" 2H ", 7200), ("1.5h", 5400),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-5m", "0", "0s", "1w", "h"])
def test_what_is_not_a_duration_says_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|more than 0"):
        parse_duration(text)
