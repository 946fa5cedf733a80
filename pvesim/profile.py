"""Guest load over simulated time, so a scenario can make nodes hot, cool down or oscillate.

A profile answers "what is this guest's cpu (share of its own vCPUs) and memory (bytes) at
`t` seconds after the simulation started?"; None means "use the guest's base value".
Profiles are pure functions of time, so any past instant can be re-evaluated for RRD history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pvesim.units import pick_size


@dataclass(frozen=True)
class LoadProfile:
    """No shape: always the guest's base values."""

    def cpu(self, t: float) -> float | None:
        return None

    def mem(self, t: float) -> int | None:
        return None


@dataclass(frozen=True)
class Step:
    """From `at` seconds on (until the next step), use these values; None keeps the previous."""

    at: float
    cpu: float | None = None
    mem: int | None = None


@dataclass(frozen=True)
class StepProfile(LoadProfile):
    """Piecewise-constant load; with `repeat`, the step pattern restarts every `repeat` seconds."""

    steps: tuple[Step, ...] = ()
    repeat: float | None = None

    def _local(self, t: float) -> float:
        if self.repeat:
            return t % self.repeat
        return t

    def cpu(self, t: float) -> float | None:
        local = self._local(t)
        value: float | None = None
        for step in self.steps:
            if step.at > local:
                break
            if step.cpu is not None:
                value = step.cpu
        return value

    def mem(self, t: float) -> int | None:
        local = self._local(t)
        value: int | None = None
        for step in self.steps:
            if step.at > local:
                break
            if step.mem is not None:
                value = step.mem
        return value


@dataclass(frozen=True)
class PeriodicProfile(LoadProfile):
    """A sine (or square) wave between min and max with the given period, e.g. a daily cycle."""

    period: float
    cpu_min: float | None = None
    cpu_max: float | None = None
    mem_min: int | None = None
    mem_max: int | None = None
    phase: float = 0.0
    wave: str = "sine"

    def _level(self, t: float) -> float:
        angle = 2 * math.pi * ((t + self.phase) / self.period)
        if self.wave == "square":
            return 1.0 if math.sin(angle) >= 0 else 0.0
        return (math.sin(angle) + 1.0) / 2.0

    def cpu(self, t: float) -> float | None:
        if self.cpu_min is None or self.cpu_max is None:
            return None
        return self.cpu_min + (self.cpu_max - self.cpu_min) * self._level(t)

    def mem(self, t: float) -> int | None:
        if self.mem_min is None or self.mem_max is None:
            return None
        return int(self.mem_min + (self.mem_max - self.mem_min) * self._level(t))


@dataclass(frozen=True)
class SpikeProfile(LoadProfile):
    """Base load except during [at, at+duration) (repeating `every` seconds if given)."""

    at: float
    duration: float
    cpu_value: float | None = None
    mem_value: int | None = None
    every: float | None = None

    def _inside(self, t: float) -> bool:
        if t < self.at:
            return False
        offset = t - self.at
        if self.every:
            offset %= self.every
        return offset < self.duration

    def cpu(self, t: float) -> float | None:
        return self.cpu_value if self._inside(t) else None

    def mem(self, t: float) -> int | None:
        return self.mem_value if self._inside(t) else None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _cpu(value: object, what: str) -> float:
    number = _number(value, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return number


_STEP_KEYS = {"at", "cpu"} | {f"mem{s}" for s in ("", "_bytes", "_kib", "_mib", "_gib", "_tib")}


def _parse_step(raw: object, what: str) -> Step:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a mapping like {{at: 0, cpu: 0.5}}")
    unknown = sorted(set(raw) - _STEP_KEYS)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(map(str, unknown))}")
    if "at" not in raw:
        raise ValueError(f"{what}: 'at' (seconds since start) is required")
    at = _number(raw["at"], f"{what}.at")
    cpu = _cpu(raw["cpu"], f"{what}.cpu") if "cpu" in raw else None
    mem = pick_size(raw, "mem")
    if cpu is None and mem is None:
        raise ValueError(f"{what}: give cpu and/or mem")
    return Step(at=at, cpu=cpu, mem=mem)


def _parse_steps(raw: Sequence[Any], what: str, repeat: float | None) -> StepProfile:
    steps = tuple(_parse_step(item, f"{what}[{i}]") for i, item in enumerate(raw))
    if [s.at for s in steps] != sorted(s.at for s in steps):
        raise ValueError(f"{what}: steps must be sorted by 'at'")
    if repeat is not None and repeat <= 0:
        raise ValueError(f"{what}: repeat must be positive")
    return StepProfile(steps=steps, repeat=repeat)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(map(str, unknown))}")


def parse_profile(raw: object, what: str = "profile") -> LoadProfile:
    """Build a profile from scenario data; ValueError with a readable message if malformed.

    Forms: a list of steps; `{shape: steps, steps: [...], repeat: S}`;
    `{shape: periodic, period: S, cpu_min, cpu_max, mem_min_gib, mem_max_gib, phase, wave}`;
    `{shape: spike, at: S, duration: S, cpu: X, mem_gib: Y, every: S}`.
    """
    if raw is None:
        return LoadProfile()
    if isinstance(raw, list):
        return _parse_steps(raw, what, None)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a list of steps or a mapping with 'shape'")
    shape = raw.get("shape", "steps")
    if shape == "steps":
        _check_keys(raw, {"shape", "steps", "repeat"}, what)
        steps = raw.get("steps")
        if not isinstance(steps, list):
            raise ValueError(f"{what}: 'steps' must be a list")
        repeat = _number(raw["repeat"], f"{what}.repeat") if "repeat" in raw else None
        return _parse_steps(steps, f"{what}.steps", repeat)
    if shape == "periodic":
        mem_keys = {k for k in _STEP_KEYS if k.startswith("mem")}
        allowed = {"shape", "period", "cpu_min", "cpu_max", "phase", "wave"}
        allowed |= {k.replace("mem", "mem_min", 1) for k in mem_keys}
        allowed |= {k.replace("mem", "mem_max", 1) for k in mem_keys}
        _check_keys(raw, allowed, what)
        if "period" not in raw:
            raise ValueError(f"{what}: periodic shape needs 'period' (seconds)")
        period = _number(raw["period"], f"{what}.period")
        if period <= 0:
            raise ValueError(f"{what}: period must be positive")
        cpu_min = _cpu(raw["cpu_min"], f"{what}.cpu_min") if "cpu_min" in raw else None
        cpu_max = _cpu(raw["cpu_max"], f"{what}.cpu_max") if "cpu_max" in raw else None
        if (cpu_min is None) != (cpu_max is None):
            raise ValueError(f"{what}: give both cpu_min and cpu_max")
        mem_min = pick_size(raw, "mem_min")
        mem_max = pick_size(raw, "mem_max")
        if (mem_min is None) != (mem_max is None):
            raise ValueError(f"{what}: give both mem_min and mem_max")
        wave = raw.get("wave", "sine")
        if wave not in ("sine", "square"):
            raise ValueError(f"{what}: wave must be 'sine' or 'square'")
        phase = _number(raw.get("phase", 0.0), f"{what}.phase")
        return PeriodicProfile(period, cpu_min, cpu_max, mem_min, mem_max, phase, str(wave))
    if shape == "spike":
        mem_keys = {k for k in _STEP_KEYS if k.startswith("mem")}
        _check_keys(raw, {"shape", "at", "duration", "cpu", "every"} | mem_keys, what)
        for key in ("at", "duration"):
            if key not in raw:
                raise ValueError(f"{what}: spike shape needs '{key}' (seconds)")
        at = _number(raw["at"], f"{what}.at")
        duration = _number(raw["duration"], f"{what}.duration")
        every = _number(raw["every"], f"{what}.every") if "every" in raw else None
        if duration <= 0 or (every is not None and every <= duration):
            raise ValueError(f"{what}: need duration > 0 and every > duration")
        cpu = _cpu(raw["cpu"], f"{what}.cpu") if "cpu" in raw else None
        mem = pick_size(raw, "mem")
        if cpu is None and mem is None:
            raise ValueError(f"{what}: spike needs cpu and/or mem")
        return SpikeProfile(at, duration, cpu, mem, every)
    raise ValueError(f"{what}: unknown shape {shape!r} (steps, periodic or spike)")
