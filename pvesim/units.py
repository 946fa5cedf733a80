"""Byte sizes in scenario files: people write `memory_gib: 64` or `"32G"`, the API speaks bytes.

All units are binary (K = KiB = 1024), like PVE's own size strings (`size=32G`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

# Suffixes allowed on a size key, e.g. `memory_gib`; the bare key takes bytes or a unit string.
KEY_SUFFIXES: dict[str, int] = {
    "_bytes": 1,
    "_kib": KIB,
    "_mib": MIB,
    "_gib": GIB,
    "_tib": TIB,
}

_UNIT_FACTORS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": KIB,
    "kb": KIB,
    "kib": KIB,
    "m": MIB,
    "mb": MIB,
    "mib": MIB,
    "g": GIB,
    "gb": GIB,
    "gib": GIB,
    "t": TIB,
    "tb": TIB,
    "tib": TIB,
}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes from an int/float (bytes) or a string like "8G", "512 MiB", "1.5T"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value!r}")
        return int(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            unit = match.group(2).lower()
            if unit in _UNIT_FACTORS:
                return int(float(match.group(1)) * _UNIT_FACTORS[unit])
        raise ValueError(f"cannot parse size {value!r} (use e.g. 8589934592, '8G' or '512 MiB')")
    raise ValueError(f"expected a size, got {type(value).__name__}")


def size_keys(key: str) -> list[str]:
    """All spellings of a size key: `memory`, `memory_bytes`, `memory_gib`, ..."""
    return [key, *(key + suffix for suffix in KEY_SUFFIXES)]


def pick_size(data: Mapping[str, Any], key: str) -> int | None:
    """Read one size given under any spelling of `key`; None if absent; ValueError if ambiguous."""
    found = [k for k in size_keys(key) if k in data]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"give only one of {', '.join(found)}")
    spelled = found[0]
    raw = data[spelled]
    if spelled == key:
        return parse_size(raw)
    factor = KEY_SUFFIXES[spelled[len(key) :]]
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise ValueError(f"{spelled} must be a non-negative number, got {raw!r}")
    return int(raw * factor)


def format_pve_size(size: int) -> str:
    """PVE's drive `size=` notation: the largest binary unit that divides evenly."""
    for suffix, factor in (("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
