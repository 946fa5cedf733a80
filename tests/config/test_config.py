"""Configuration loading: every mistake names its key and what is allowed; secrets never leak."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from balancer.cli import EXIT_CONFIG, EXIT_OK, main
from balancer.config import ConfigError, Secret, load_config, parse_config, redact_url

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "balancer.yaml.example"
TOKEN = "5ecr3t-70ken-value"


def minimal(**balancing: Any) -> dict[str, Any]:
    return {
        "proxmox": {"hosts": ["pve1:8006"], "user": "balancer@pve", "token_name": "balancer",
                    "token_value": TOKEN},
        "balancing": balancing,
    }


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "balancer.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_example_config_loads_with_documented_defaults() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.proxmox.hosts == ("pve1.example.com:8006", "pve2.example.com:8006")
    assert config.balancing.cpu_max == 0.8
    assert config.balancing.exclude_tags == ("pve-balancer-ignore",)
    assert config.balancing.ema_samples == 12
    assert config.balancing.ema_alpha == pytest.approx(2 / 13)
    assert config.balancing.ema_min_samples == 6


def test_every_documented_key_is_in_the_example() -> None:
    from balancer.config import SCHEMA

    raw = yaml.safe_load(EXAMPLE.read_text())
    for section, keys in SCHEMA.items():
        assert set(raw[section]) == set(keys), section


def test_unknown_key_suggests_the_closest_known_one() -> None:
    with pytest.raises(ConfigError, match=r"key 'balancing.cpu_mx'; did you mean 'cpu_max'"):
        parse_config(minimal(cpu_mx=0.7), env={})


def test_unknown_section_is_named() -> None:
    doc = minimal()
    doc["balancer"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'balancer'; did you mean 'balancing'"):
        parse_config(doc, env={})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("interval_seconds", 0, r"interval_seconds: 0 is out of range; allowed 0.1..3600"),
        ("proactive_margin", 0.9, r"proactive_margin: 0.9 is out of range; allowed 0.05..0.5"),
        ("safety_margin", -0.1, r"balancing.safety_margin: -0.1 is out of range; allowed 0.0..0.3"),
        ("interval_seconds", "5s", r"balancing.interval_seconds: expected a number in 0.1..3600"),
        ("dry_run", "yes", r"balancing.dry_run: expected true or false"),
        ("exclude_tags", "x", r"balancing.exclude_tags: expected a list of non-empty strings"),
        ("cpu_max", float("nan"), r"balancing.cpu_max: expected a number in 0.5..0.9"),
        ("migration_cooldown_seconds", True, r"migration_cooldown_seconds: expected a number"),
    ],
)
def test_bad_values_name_the_key_and_allowed_range(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(minimal(**{key: value}), env={})


def test_thresholds_are_clamped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = parse_config(minimal(cpu_max=0.95, memory_max=0.2), env={})
    assert config.balancing.cpu_max == 0.9
    assert config.balancing.memory_max == 0.5
    assert "balancing.cpu_max=0.95 is outside 0.5..0.9; clamped to 0.9" in caplog.text


@pytest.mark.parametrize("value", [80, 0, -0.5, 1.2])
def test_a_threshold_that_is_no_ratio_is_an_error_not_clamped(value: float) -> None:
    with pytest.raises(ConfigError, match=rf"balancing.cpu_max: {value} is out of range; "
                                          r"allowed 0.5..0.9"):
        parse_config(minimal(cpu_max=value), env={})


def test_window_must_hold_two_intervals() -> None:
    with pytest.raises(ConfigError, match=r"ema_window_seconds: must be at least 2 x"):
        parse_config(minimal(interval_seconds=10, ema_window_seconds=15), env={})


@pytest.mark.parametrize("missing", ["hosts", "user", "token_name", "token_value"])
def test_missing_required_key(missing: str) -> None:
    doc = minimal()
    del doc["proxmox"][missing]
    with pytest.raises(ConfigError, match=rf"proxmox.{missing}: required key is missing"):
        parse_config(doc, env={})


@pytest.mark.parametrize("host", ["https://pve1:8006", "pve1:99999", "pve1:abc"])
def test_bad_hosts_are_rejected(host: str) -> None:
    doc = minimal()
    doc["proxmox"]["hosts"] = [host]
    with pytest.raises(ConfigError, match=r"proxmox.hosts: "):
        parse_config(doc, env={})


def test_environment_overrides_token_and_redis_url() -> None:
    doc = minimal()
    del doc["proxmox"]["token_value"]
    config = parse_config(doc, env={"PVE_TOKEN_VALUE": "from-env",
                                    "REDIS_URL": "redis://:pw@r:6379/1"})
    assert config.proxmox.token_value.reveal() == "from-env"
    assert config.redis.url.reveal() == "redis://:pw@r:6379/1"
    assert config.redis.redacted_url == "redis://:***@r:6379/1"


def test_secrets_never_print() -> None:
    doc = minimal()
    doc["redis"] = {"url": "redis://:hunter2@localhost:6379/0"}
    config = parse_config(doc, env={})
    for text in (repr(config), str(config), str(config.redacted())):
        assert TOKEN not in text
        assert "hunter2" not in text
    assert str(Secret("x")) == "Secret(***)"
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"


def test_wrong_type_for_token_does_not_echo_it() -> None:
    doc = minimal()
    doc["proxmox"]["token_value"] = ["5ecr3t"]
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    assert "5ecr3t" not in str(err.value)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "proxmox:\n  hosts: [a\n  user: x\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_config(path, env={})


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope.yaml"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(cpu_max=0.7))
    assert load_config(None, env={"BALANCER_CONFIG": str(path)}).balancing.cpu_max == 0.7


def test_check_config_cli_prints_redacted_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PVE_TOKEN_VALUE", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = write(tmp_path, minimal())
    assert main(["--config", str(path), "check-config"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "token_value: '***'" in out
    assert TOKEN not in out
    assert "configuration OK" in out


def test_check_config_cli_fails_on_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, minimal(cpu_mx=1))
    assert main(["--config", str(path), "check-config"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "did you mean 'cpu_max'" in err
    assert TOKEN not in err


def test_a_token_read_from_a_file_loses_its_trailing_newline() -> None:
    """Issue 20.5: `PVE_TOKEN_VALUE=$(cat file)` or a YAML block scalar keeps the newline, which
    requests then refuses in the Authorization header, quoting the secret."""
    doc = minimal()
    doc["proxmox"]["token_value"] = TOKEN + "\n"
    assert parse_config(doc, env={}).proxmox.token_value.reveal() == TOKEN
    env = parse_config(minimal(), env={"PVE_TOKEN_VALUE": f"  {TOKEN}\r\n"})
    assert env.proxmox.token_value.reveal() == TOKEN


@pytest.mark.parametrize("bad", ["two words", "tab\there", "nul\x00byte", "\n"])
def test_a_token_with_inner_whitespace_or_control_characters_is_refused(bad: str) -> None:
    doc = minimal()
    doc["proxmox"]["token_value"] = bad
    with pytest.raises(ConfigError) as info:
        parse_config(doc, env={})
    assert str(info.value).startswith("proxmox.token_value: ")
    assert bad.strip() not in str(info.value) or not bad.strip()


def test_the_exporter_binds_loopback_unless_told_otherwise() -> None:
    """Issue 20.6: it bound 0.0.0.0 with no way to say otherwise."""
    assert parse_config(minimal(), env={}).metrics.listen == "127.0.0.1"
    doc = {**minimal(), "metrics": {"listen": "0.0.0.0"}}
    assert parse_config(doc, env={}).metrics.listen == "0.0.0.0"
    doc = {**minimal(), "metrics": {"listen": "everywhere"}}
    with pytest.raises(ConfigError, match=r"metrics.listen: 'everywhere' is not an IP address"):
        parse_config(doc, env={})


@pytest.mark.parametrize("pasted", ["balancer@pve!balancer", "balancer@pve", "pve!balancer"])
def test_a_whole_token_id_as_token_name_says_the_expected_form(pasted: str) -> None:
    """Issue 17: PVE shows the token id `user@realm!name`; people paste all of it."""
    raw = minimal()
    raw["proxmox"]["token_name"] = pasted
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, env={})
    message = str(exc.value)
    assert message.startswith("proxmox.token_name: ") and "part after '!'" in message
    assert "proxmox.user" in message
