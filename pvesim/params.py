"""Request parameter schemas, checked the way PVE's JSONSchema does (strict 1/0 booleans!)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pvesim.errors import param_error

_NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Param:
    """One parameter: kind is boolean|integer|number|string|node|vmid."""

    kind: str = "string"
    optional: bool = True
    enum: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


# Shorthands for the schemas in endpoints.py.
BOOL = Param("boolean")
INT = Param("integer")
STR = Param("string")
NODE = Param("node", optional=False)
VMID = Param("vmid", optional=False, minimum=100, maximum=999_999_999)


def enum(*values: str, optional: bool = True) -> Param:
    return Param("string", optional=optional, enum=values)


def required(param: Param) -> Param:
    return Param(param.kind, False, param.enum, param.minimum, param.maximum)


def _check(name: str, spec: Param, raw: str) -> tuple[Any, str | None]:
    if spec.kind == "boolean":
        if raw in ("1", "0"):
            return raw == "1", None
        return None, f"type check ('boolean') failed - got '{raw}'"
    if spec.kind in ("integer", "vmid"):
        if not _INT_RE.match(raw):
            return None, f"type check ('integer') failed - got '{raw}'"
        value: Any = int(raw)
    elif spec.kind == "number":
        if not _NUM_RE.match(raw):
            return None, f"type check ('number') failed - got '{raw}'"
        value = float(raw)
    elif spec.kind == "node":
        if not _NODE_RE.match(raw):
            return None, f"value '{raw}' does not look like a valid node name"
        value = raw
    else:
        value = raw
        if spec.enum and raw not in spec.enum:
            values = ", ".join(spec.enum)
            return None, f"value '{raw}' does not have a value in the enumeration '{values}'"
    if spec.minimum is not None and value < spec.minimum:
        return None, f"value must have a minimum value of {spec.minimum:g}"
    if spec.maximum is not None and value > spec.maximum:
        return None, f"value must have a maximum value of {spec.maximum:g}"
    return value, None


def validate(schema: Mapping[str, Param], raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed parameters, or ApiError 400 listing every bad/unknown/missing parameter."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, text in raw.items():
        spec = schema.get(name)
        if spec is None:
            errors[name] = (
                "property is not defined in schema and the schema does not allow "
                "additional properties"
            )
            continue
        value, error = _check(name, spec, text)
        if error is not None:
            errors[name] = error
        else:
            values[name] = value
    for name, spec in schema.items():
        if not spec.optional and name not in raw:
            errors[name] = "property is missing and it is not optional"
    if errors:
        raise param_error(errors)
    return values
