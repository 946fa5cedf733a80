"""Configuration: load the YAML file, apply environment overrides, validate every key.

Every error names the key (dotted path) and what is allowed; secrets never appear in an error
or in `repr()`. The worker refuses to start on any error rather than run half-configured.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import yaml

from balancer.quiet import QuietHoursError, QuietWindow, parse_windows

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "/etc/pve-balancer/balancer.yaml"
CONFIG_ENV = "BALANCER_CONFIG"
TOKEN_ENV = "PVE_TOKEN_VALUE"
REDIS_URL_ENV = "REDIS_URL"
REDACTED = "***"


class ConfigError(ValueError):
    """A configuration problem a person can fix; the message names the key."""


class Secret:
    """A string that does not print itself: `str()`, `repr()` and f-strings show `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__


#: The user-info of a URL up to its *last* `@`: a password holding `/`, `?` or `#` unencoded
#: ends `urlsplit`'s netloc early, and must still be hidden.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@]*):(?P<pw>.*)@")


def redact_url(url: str) -> str:
    """Replace the password in a URL (`redis://:pw@host`) with `***`, whatever it holds."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url, count=1)


# --- validation -----------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _number(lo: float, hi: float, *, clamp: bool = False, integer: bool = False) -> Check:
    """A number in [lo, hi]; with `clamp` an out-of-range ratio (0 < value <= 1) is pulled in
    with a warning, while a value that is no ratio at all (0, negative, 80 for 80%) is an
    error: a typo must not silently become the nearest limit."""

    def check(key: str, value: Any) -> Any:
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected {kind} in {lo}..{hi}, got {_kind(value)}")
        if integer and not isinstance(value, int):
            raise ConfigError(f"{key}: expected {kind} in {lo}..{hi}, got {value!r}")
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"{key}: expected {kind} in {lo}..{hi}, got {value!r}")
        if lo <= value <= hi:
            return value
        if clamp and 0 < value <= 1:
            clamped = min(max(value, lo), hi)
            log.warning("config %s=%s is outside %s..%s; clamped to %s",
                        key, value, lo, hi, clamped)
            return clamped
        raise ConfigError(f"{key}: {value!r} is out of range; allowed {lo}..{hi}")

    return check


def _optional(check: Check) -> Check:
    """`check`, or null for "derived from another key" (the help says from which)."""

    def optional(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)

    return optional


def _boolean(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {_kind(value)}")
    return value


def _text(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {_kind(value)}")
    return value


def _token_name(key: str, value: Any) -> Any:
    """The token's own name: PVE's token id is `user@realm!name`, and people paste all of it."""
    name = _text(key, value)
    if "@" in name or "!" in name:
        raise ConfigError(
            f"{key}: {name!r} looks like a whole token id; give only the part after '!' "
            f"(e.g. {name.rpartition('!')[2] or 'balancer'!r}) and the user in proxmox.user "
            "(e.g. 'balancer@pve')")
    return name


def _optional_text(key: str, value: Any) -> Any:
    return None if value is None else _text(key, value)


def _secret(key: str, value: Any) -> Any:
    """A secret, without the surrounding whitespace a file or an env var often adds (a
    trailing newline would end up in an HTTP header). Never echo the value."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string")
    value = value.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(f"{key}: contains whitespace or control characters; a PVE token "
                          "secret is one word (a UUID)")
    return Secret(value)


def _choice(*allowed: str) -> Check:
    def check(key: str, value: Any) -> Any:
        if value not in allowed:
            choices = ", ".join(allowed)
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {choices}")
        return value

    return check


def _string_list(key: str, value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of non-empty strings, got {_kind(value)}")
    return tuple(value)


def _hosts(key: str, value: Any) -> Any:
    hosts = _string_list(key, value)
    if not hosts:
        raise ConfigError(f"{key}: needs at least one \"host\" or \"host:port\"")
    for host in hosts:
        if "://" in host or "/" in host:
            raise ConfigError(
                f"{key}: {host!r} must be \"host\" or \"host:port\", without scheme or path")
        _, sep, port = host.rpartition(":")
        if sep and not host.endswith("]") and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"{key}: {host!r} has a bad port; allowed 1..65535")
    return hosts


def _listen_address(key: str, value: Any) -> Any:
    """An IP address to bind (0.0.0.0 or :: for every interface)."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected an IP address such as 127.0.0.1 or 0.0.0.0, got "
                          f"{_kind(value)}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not an IP address; use 127.0.0.1 (this host "
                          "only) or 0.0.0.0 (every interface)") from None
    return value


#: `rediss://` certificate checks both Celery and redis-py read (Celery also reads CERT_*).
SSL_CERT_REQS = ("required", "optional", "none")


def _redis_url(key: str, value: Any) -> Any:
    """A URL both Celery (broker, results) and redis-py (the state store) read the same way.
    Never echoes the value: it may hold the password."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a redis://, rediss:// or redis+socket:// URL")
    parts = urlsplit(value.strip())
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        raise ConfigError(f"{key}: the password (or user) holds '/', '?' or '#': "
                          "percent-encode it (%2F, %3F, %23), e.g. with python3 -c "
                          "'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], "
                          "safe=\"\"))' PASSWORD")
    if parts.scheme == "unix":
        raise ConfigError(f"{key}: Celery's Redis transport does not read unix:// URLs; for a "
                          "socket write redis+socket:///run/redis/redis.sock (database: "
                          "?virtual_host=0)")
    if parts.scheme == "rediss":
        reqs = parse_qs(parts.query).get("ssl_cert_reqs", [])
        if not reqs:
            raise ConfigError(f"{key}: a rediss:// URL needs ?ssl_cert_reqs=required (or "
                              "optional, none): Celery refuses it without; add "
                              "&ssl_ca_certs=/path/to/ca.pem for a private CA")
        if reqs[-1] not in SSL_CERT_REQS:
            raise ConfigError(f"{key}: ssl_cert_reqs must be one of "
                              f"{', '.join(SSL_CERT_REQS)} (lowercase: Celery and redis-py "
                              "both read those)")
    elif parts.scheme not in ("redis", "redis+socket"):
        raise ConfigError(f"{key}: expected a redis://, rediss:// or redis+socket:// URL "
                          f"(got {parts.scheme or 'no'} scheme; Sentinel and cluster URLs are "
                          "not supported)")
    return Secret(value.strip())


def _quiet_hours(key: str, value: Any) -> Any:
    try:
        return parse_windows(key, value)
    except QuietHoursError as exc:
        raise ConfigError(str(exc)) from None


def _notification_urls(key: str, value: Any) -> Any:
    """Apprise URLs (ntfy://, gotify://, json://, mailto://, ...): secrets, since most carry a
    token. Checked for shape here and by Apprise when the worker starts."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of Apprise URLs, got {_kind(value)}")
    for index, url in enumerate(value):
        if not isinstance(url, str) or "://" not in url:
            # Never echo the value: a half-typed URL may still hold a token.
            raise ConfigError(f"{key}[{index}]: expected an Apprise URL such as "
                              "ntfy://ntfy.example/topic or json://host:port/path")
    return tuple(Secret(url.strip()) for url in value)


def _kind(value: Any) -> str:
    return "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"


# --- declaration: each key once (check, default, help); the sections below use it ---------

REQUIRED: Any = object()


class Key(NamedTuple):
    """One config key: how a value is checked, its default (or REQUIRED), what it is for."""

    check: Check
    default: Any
    help: str


def setting(default: Any, check: Check, help: str) -> Any:
    """A dataclass field declaring one config key; `SCHEMA` is read back from these."""
    key = {"key": Key(check, default, help)}
    if default is REQUIRED:
        return field(metadata=key)
    return field(default=default, metadata=key)


@dataclass(frozen=True)
class ProxmoxConfig:
    hosts: tuple[str, ...] = setting(
        REQUIRED, _hosts, "PVE API endpoints, host or host:port, tried in order")
    user: str = setting(REQUIRED, _text, "user owning the token, e.g. balancer@pve")
    token_name: str = setting(REQUIRED, _token_name, "token id, e.g. balancer")
    token_value: Secret = setting(REQUIRED, _secret, "token secret ($PVE_TOKEN_VALUE)")
    verify_ssl: bool = setting(True, _boolean, "verify PVE's TLS certificate")
    ca_bundle: str | None = setting(None, _optional_text, "CA file for a private CA")
    timeout_seconds: float = setting(10.0, _number(0.5, 300), "timeout of every API call")


@dataclass(frozen=True)
class RedisConfig:
    url: Secret = setting(Secret("redis://localhost:6379/0"), _redis_url,
                          "broker, results and state ($REDIS_URL)")

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url.reveal())


@dataclass(frozen=True)
class BalancingConfig:
    cpu_max: float = setting(0.8, _number(0.5, 0.9, clamp=True), "CPU EMA threshold")
    cpu_hysteresis: float = setting(
        0.01, _number(0.0, 0.1),
        "a node a move brought under cpu_max fires again only above cpu_max + this")
    memory_max: float = setting(0.8, _number(0.5, 0.9, clamp=True), "memory threshold")
    interval_seconds: float = setting(5.0, _number(0.1, 3600), "evaluation period")
    ema_window_seconds: float = setting(60.0, _number(0.2, 86400), "CPU EMA window")
    proactive: bool = setting(True, _boolean, "voluntary memory spreading in a calm cluster")
    proactive_margin: float = setting(0.20, _number(0.05, 0.5),
                                      "proactive threshold = mean memory + this")
    proactive_hold_seconds: float | None = setting(
        None, _optional(_number(0, 86400)),
        "a node must stay above the proactive threshold this long (null: the EMA window)")
    safety_margin: float = setting(0.05, _number(0.0, 0.3),
                                   "a target stays below each max minus this")
    migration_cooldown_seconds: float = setting(600.0, _number(0, 7 * 86400),
                                                "a VM just moved is not moved again before")
    return_window_seconds: float = setting(
        3600.0, _number(0, 7 * 86400),
        "a VM goes back to a node it left this recently only when no other target is "
        "valid, and is tried after equally good candidates that did not move")
    exclude_tags: tuple[str, ...] = setting(("pve-balancer-ignore",), _string_list,
                                            "guests with any of these tags never move")
    exclude_nodes: tuple[str, ...] = setting((), _string_list,
                                             "nodes never a source or a target")
    proxlb_tags: bool = setting(True, _boolean, "honour ProxLB's plb_* tags")
    repair_rules: bool = setting(True, _boolean,
                                 "repair broken plb_anti_affinity_* and plb_pin_* tags")
    leave_ha_to_pve: bool = setting(True, _boolean, "leave HA guests to PVE's auto-rebalance")
    evacuate_ha_maintenance: bool = setting(
        False, _boolean, "drain a node in PVE HA maintenance of the non-HA VMs PVE leaves")
    quiet_hours: tuple[QuietWindow, ...] = setting(
        (), _quiet_hours, "windows (days, start, end, timezone) in which only drains move")
    dry_run: bool = setting(False, _boolean, "decide and record, migrate nothing")

    @property
    def ema_samples(self) -> int:
        """N in alpha = 2/(N+1): how many samples one EMA window holds."""
        return max(1, round(self.ema_window_seconds / self.interval_seconds))

    @property
    def ema_alpha(self) -> float:
        return 2.0 / (self.ema_samples + 1)

    @property
    def proactive_hold(self) -> float:
        """Seconds a node stays above the proactive threshold before a voluntary move."""
        if self.proactive_hold_seconds is None:
            return self.ema_window_seconds
        return self.proactive_hold_seconds

    @property
    def ema_min_samples(self) -> int:
        """The CPU trigger waits for half a window so a fresh start never acts on a spike."""
        return max(1, math.ceil(self.ema_samples / 2))


@dataclass(frozen=True)
class LoggingConfig:
    format: str = setting("text", _choice("text", "json"), "text (key=value) or json")
    level: str = setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "log level")


@dataclass(frozen=True)
class MetricsConfig:
    port: int = setting(9108, _number(0, 65535, integer=True), "port of the exporter")
    #: Address the exporter binds: loopback unless the operator opens it on purpose.
    listen: str = setting("127.0.0.1", _listen_address, "address the exporter binds")


@dataclass(frozen=True)
class WebConfig:
    port: int = setting(8108, _number(1, 65535, integer=True), "port of the status page")
    listen: str = setting("127.0.0.1", _listen_address, "address the status page binds")


@dataclass(frozen=True)
class NotificationsConfig:
    urls: tuple[Secret, ...] = setting((), _notification_urls,
                                       "Apprise URLs to notify (secrets: redacted everywhere)")
    stuck_after_seconds: float = setting(
        900.0, _number(0, 7 * 86400), "notify when a node stays saturated with no move this long")
    throttle_seconds: float = setting(
        3600.0, _number(0, 7 * 86400), "the same notification is sent at most once per this")


@dataclass(frozen=True)
class Config:
    proxmox: ProxmoxConfig
    redis: RedisConfig = field(default_factory=RedisConfig)
    balancing: BalancingConfig = field(default_factory=BalancingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret replaced by `***`."""
        return _as_plain(self)


def _as_plain(value: Any) -> Any:
    if isinstance(value, QuietWindow):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _as_plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, RedisConfig):
            out["url"] = value.redacted_url
        return out
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, tuple):
        return [_as_plain(v) for v in value]
    return value


#: section -> key -> Key(check, default, help), read from the section dataclasses: the one
#: place that says what a valid config is.
SECTION_TYPES: dict[str, type] = {
    "proxmox": ProxmoxConfig,
    "redis": RedisConfig,
    "balancing": BalancingConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "notifications": NotificationsConfig,
    "web": WebConfig,
}
SCHEMA: dict[str, dict[str, Key]] = {
    name: {f.name: f.metadata["key"] for f in fields(cls)}
    for name, cls in SECTION_TYPES.items()
}


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown key {key!r}{hint}")


def _section(name: str, raw: Any) -> Any:
    schema = SCHEMA[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping of keys, got {_kind(raw)}")
    for key in raw:
        if key not in schema:
            raise _unknown_key(f"{name}.{key}", list(schema))
    values: dict[str, Any] = {}
    for key, declared in schema.items():
        dotted = f"{name}.{key}"
        if key in raw:
            values[key] = declared.check(dotted, raw[key])
        elif declared.default is REQUIRED:
            raise ConfigError(f"{dotted}: required key is missing")
    return SECTION_TYPES[name](**values)


def _cross_checks(config: Config) -> None:
    b = config.balancing
    if b.ema_window_seconds < 2 * b.interval_seconds:
        raise ConfigError(
            "balancing.ema_window_seconds: must be at least 2 x balancing.interval_seconds "
            f"({2 * b.interval_seconds:g}); got {b.ema_window_seconds:g}"
        )
    for key in ("cpu_max", "memory_max"):
        if getattr(b, key) - b.safety_margin <= 0.3:
            raise ConfigError(
                f"balancing.safety_margin: {b.safety_margin:g} leaves too little room under "
                f"balancing.{key} ({getattr(b, key):g}); allowed up to {getattr(b, key) - 0.3:g}"
            )
    if config.proxmox.ca_bundle and not Path(config.proxmox.ca_bundle).is_file():
        raise ConfigError(f"proxmox.ca_bundle: file {config.proxmox.ca_bundle!r} is not readable")


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document (plus env overrides) into a `Config`."""
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"top level: expected a mapping of sections, got {_kind(raw)}")
    for key in raw:
        if key not in SCHEMA:
            raise _unknown_key(str(key), list(SCHEMA))
    sections = {name: dict(raw.get(name) or {}) if isinstance(raw.get(name), Mapping)
                else raw.get(name) for name in SCHEMA}
    if env.get(TOKEN_ENV):
        sections["proxmox"] = {**(sections["proxmox"] or {}), "token_value": env[TOKEN_ENV]}
    if env.get(REDIS_URL_ENV):
        sections["redis"] = {**(sections["redis"] or {}), "url": env[REDIS_URL_ENV]}
    config = Config(**{name: _section(name, sections[name]) for name in SCHEMA})
    _cross_checks(config)
    return config


def resolve_path(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at `path`, `$BALANCER_CONFIG` or the default path."""
    resolved = resolve_path(path, env)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {resolved}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{resolved}: invalid YAML{where}: {problem}") from None
    try:
        return parse_config(raw, env)
    except ConfigError as exc:
        raise ConfigError(f"{resolved}: {exc}") from None
