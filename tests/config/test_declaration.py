"""Each config key is declared once, as a `setting()` field of its section's dataclass (check,
default, help); `SCHEMA` and the validation are read from it. The commented example and the
README's table must say the same (issue 14)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from balancer.config import REQUIRED, SCHEMA, SECTION_TYPES, Key, Secret, parse_config

ROOT = Path(__file__).resolve().parents[2]
KEYS = [(section, key) for section, keys in SCHEMA.items() for key in keys]


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


MINIMAL = {"proxmox": {"hosts": ["pve1"], "user": "balancer@pve", "token_name": "balancer",
                       "token_value": "3a1f7c2e-0000-4000-8000-000000000000"}}


def test_every_dataclass_field_is_a_declared_key() -> None:
    for section, cls in SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            assert isinstance(f.metadata.get("key"), Key), f"{section}.{f.name}: use setting()"
            assert f.metadata["key"].help, f"{section}.{f.name} says what it is for"


@pytest.mark.parametrize(("section", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_a_missing_key_gets_its_declared_default(section: str, key: str) -> None:
    declared = SCHEMA[section][key]
    if declared.default is REQUIRED:
        return
    config = parse_config(MINIMAL, env={})
    assert getattr(getattr(config, section), key) == declared.default


@pytest.mark.parametrize(("section", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_the_declared_default_passes_its_own_check(section: str, key: str) -> None:
    declared = SCHEMA[section][key]
    if declared.default is REQUIRED:
        return
    checked = declared.check(f"{section}.{key}", _plain(declared.default))
    assert _plain(checked) == _plain(declared.default)


def test_the_example_sets_every_key_to_its_default() -> None:
    example = yaml.safe_load((ROOT / "config" / "balancer.yaml.example").read_text())
    for section, key in KEYS:
        declared = SCHEMA[section][key].default
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
        declared = SCHEMA[section][key].default
        shown = rows[f"{section}.{key}"]
        if declared is REQUIRED:
            assert shown == "required", key
            continue
        text = shown.strip("`")
        value = yaml.safe_load(text)
        assert _plain(value) == _plain(declared), f"{section}.{key}: README says {shown}, " \
                                                  f"declared {json.dumps(_plain(declared))}"
