"""Requests checked against PVE's own API schema (vendored from pve-docs' apidata.js).

`request_problems(method, path, params)` says what PVE's `JSONSchema::validate` (pve-common
src/PVE/JSONSchema.pm, f665029) would reject: an unknown path or method, a parameter not in
the schema (every endpoint has additionalProperties 0), a missing required one, a value of the
wrong type (booleans only "0"/"1"), out of range, not in the enum, or not of its format. The
rules and their line numbers are in schema/pve-api-subset.json `_source.validation_rules`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).parent / "schema" / "pve-api-subset.json"

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")
_FORMATS: dict[str, re.Pattern[str]] = {
    "pve-node": re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$"),
    "pve-vmid": re.compile(r"^[1-9][0-9]{2,8}$"),
    "pve-configid": re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE),
    "pve-task-status-type-list": re.compile(r"^(ok|error|warning|unknown)$", re.IGNORECASE),
    "pve-ha-resource-or-vm-id": re.compile(r"^([a-z]+:\S+|\d+)$"),
}
_LIST_SPLIT = re.compile(r"[,;\s]+")


@cache
def endpoints() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_FILE.read_text())["endpoints"])


def _template_match(template: str, path: str) -> dict[str, str] | None:
    want, got = template.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{") and w.endswith("}"):
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


def find_endpoint(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """(key, schema, path parameters) of the endpoint `METHOD path` hits, literal parts first."""
    best: tuple[int, str, dict[str, Any], dict[str, str]] | None = None
    for key, schema in endpoints().items():
        verb, template = key.split(" ", 1)
        if verb != method:
            continue
        found = _template_match(template, path)
        if found is None:
            continue
        score = -len(found)  # /cluster/ha/rules beats /cluster/ha/{x}
        if best is None or score > best[0]:
            best = (score, key, schema, found)
    return None if best is None else (best[1], best[2], best[3])


def _pattern(raw: str) -> re.Pattern[str]:
    return re.compile(raw.replace("(?^:", "(?:"))


def value_problem(name: str, spec: Mapping[str, Any], value: str) -> str | None:
    """What PVE's check_prop would say about one parameter value (sent as a string)."""
    kind = spec.get("type", "string")
    if kind == "boolean" and value not in ("0", "1"):
        return f"{name}: type check ('boolean') failed - got '{value}'"
    if kind == "integer" and not _INTEGER.match(value):
        return f"{name}: type check ('integer') failed - got '{value}'"
    if kind == "number" and not _NUMBER.match(value):
        return f"{name}: type check ('number') failed - got '{value}'"
    fmt = spec.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        items = _LIST_SPLIT.split(value) if fmt.endswith("-list") else [value]
        if any(not _FORMATS[fmt].match(item) for item in items if item):
            return f"{name}: value does not match the format {fmt}: '{value}'"
    pattern = spec.get("pattern")
    if isinstance(pattern, str) and not _pattern(f"^{pattern}$").match(value):
        return f"{name}: value does not match the regex pattern: '{value}'"
    if "maxLength" in spec and len(value) > int(spec["maxLength"]):
        return f"{name}: value may only be {spec['maxLength']} characters long"
    if kind in ("integer", "number") and _NUMBER.match(value):
        number = float(value)
        if "minimum" in spec and number < float(spec["minimum"]):
            return f"{name}: value must have a minimum value of {spec['minimum']}"
        if "maximum" in spec and number > float(spec["maximum"]):
            return f"{name}: value must have a maximum value of {spec['maximum']}"
    enum = spec.get("enum")
    if isinstance(enum, list) and value not in [str(e) for e in enum]:
        return f"{name}: value '{value}' does not have a value in the enumeration " \
               f"'{', '.join(map(str, enum))}'"
    return None


def request_problems(method: str, path: str, params: Mapping[str, str]) -> list[str]:
    """Everything PVE would reject in one request (empty when it would accept it)."""
    found = find_endpoint(method, path)
    if found is None:
        return [f"{method} {path}: no such method in PVE's API schema"]
    key, schema, path_params = found
    properties: Mapping[str, Any] = schema.get("parameters", {}).get("properties", {})
    merged = {**params, **path_params}
    problems = [f"{key}: {name}: property is not defined in schema and the schema does not "
                "allow additional properties" for name in sorted(merged) if name not in
                properties]
    for name, spec in sorted(properties.items()):
        if name not in merged:
            if not spec.get("optional"):
                problems.append(f"{key}: {name}: property is missing and it is not optional")
            continue
        problem = value_problem(name, spec, str(merged[name]))
        if problem is not None:
            problems.append(f"{key}: {problem}")
    return problems
