"""Each config key is declared in `SCHEMA` (check and default); the dataclass defaults, the
commented example and the README's table must say the same (issue 14)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from balancer.config import REQUIRED, SCHEMA, SECTION_TYPES, Secret

ROOT = Path(__file__).resolve().parents[2]
KEYS = [(section, key) for section, keys in SCHEMA.items() for key in keys]


def _dataclass_default(section: str, key: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(SECTION_TYPES[section])}[key]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return REQUIRED


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(("section", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_dataclass_default_is_the_declared_one(section: str, key: str) -> None:
    declared = SCHEMA[section][key][1]
    assert _plain(_dataclass_default(section, key)) == _plain(declared) or (
        declared is REQUIRED and _dataclass_default(section, key) is REQUIRED)


def test_every_dataclass_field_is_declared() -> None:
    for section, cls in SECTION_TYPES.items():
        assert {f.name for f in dataclasses.fields(cls)} == set(SCHEMA[section]), section


def test_the_example_sets_every_key_to_its_default() -> None:
    example = yaml.safe_load((ROOT / "config" / "balancer.yaml.example").read_text())
    for section, key in KEYS:
        declared = SCHEMA[section][key][1]
        assert key in example[section], f"{section}.{key} missing from the example"
        if declared is not REQUIRED:
            assert _plain(example[section][key]) == _plain(declared), f"{section}.{key}"


def _readme_rows() -> dict[str, str]:
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| (.+?) \|", (ROOT / "README.md").read_text(),
                      re.MULTILINE)
    return dict(rows)


def test_the_readme_table_lists_every_key_with_its_default() -> None:
    rows = _readme_rows()
    assert set(rows) == {f"{s}.{k}" for s, k in KEYS}
    for section, key in KEYS:
        declared = SCHEMA[section][key][1]
        shown = rows[f"{section}.{key}"]
        if declared is REQUIRED:
            assert shown == "required", key
            continue
        text = shown.strip("`")
        value = yaml.safe_load(text)
        assert _plain(value) == _plain(declared), f"{section}.{key}: README says {shown}, " \
                                                  f"declared {json.dumps(_plain(declared))}"
