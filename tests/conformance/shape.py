"""Compare the *shape* of two JSON values: which keys, which JSON types, recursively.

A fixture derived from PVE's source and a payload served by `pvesim` for the same input must
have the same shape; values may differ where the input does (sizes, timestamps).
"""

from __future__ import annotations

from typing import Any


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_differences(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Every place where `actual` has another type, a missing key or an extra key."""
    te, ta = json_type(expected), json_type(actual)
    if te != ta and {te, ta} != {"integer", "number"}:
        return [f"{where}: {ta} where PVE sends {te}"]
    problems: list[str] = []
    if te == "object":
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            elif key not in expected:
                problems.append(f"{where}.{key}: not sent by PVE")
            else:
                problems += shape_differences(expected[key], actual[key], f"{where}.{key}")
    elif te == "array" and expected and actual:
        for i, item in enumerate(actual):
            problems += shape_differences(expected[0], item, f"{where}[{i}]")
    return problems
