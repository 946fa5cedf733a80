"""The model's records: `guest_record` builds the very record `Guest(...)` builds."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from balancer.model import Guest, GuestType, guest_record

CASES = [
    (101, "web", GuestType.QEMU, "pve1", "running", 0.25, 4.0, 1 << 30, 4 << 30, 1 << 30,
     False, frozenset({"a", "plb_pin_pve1"}), None, "started"),
    (9000, "", GuestType.LXC, "pve2", "stopped", 0.0, 1.5, 0, 0, None, True, frozenset(),
     "backup", None),
]


def test_its_parameters_are_guests_fields_in_order() -> None:
    """A field added to Guest without `guest_record` would leave a slot unset."""
    assert list(inspect.signature(guest_record).parameters) == [
        f.name for f in dataclasses.fields(Guest)]


@pytest.mark.parametrize("values", CASES)
def test_it_builds_the_record_the_constructor_builds(values: tuple[object, ...]) -> None:
    built, expected = guest_record(*values), Guest(*values)  # type: ignore[arg-type]
    assert built == expected and hash(built) == hash(expected)
    assert dataclasses.astuple(built) == values
    assert dataclasses.replace(built, cpu=0.5) == dataclasses.replace(expected, cpu=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.cpu = 1.0  # type: ignore[misc]
