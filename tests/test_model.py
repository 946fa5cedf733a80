"""The model's records behave as the frozen dataclasses they replaced: `Guest` is a msgspec
Struct (built once per guest every cycle), and the engine relies on its value semantics."""

from __future__ import annotations

import gc

import msgspec
import pytest

from balancer.model import Guest, GuestType

CASES = [
    (101, "web", GuestType.QEMU, "pve1", "running", 0.25, 4.0, 1 << 30, 4 << 30, 1 << 30,
     False, frozenset({"a", "plb_pin_pve1"}), None, "started"),
    (9000, "", GuestType.LXC, "pve2", "stopped", 0.0, 1.5, 0, 0, None, True, frozenset(),
     "backup", None),
]
FIELDS = ("vmid", "name", "type", "node", "status", "cpu", "maxcpu", "mem", "maxmem",
          "memhost", "template", "tags", "lock", "hastate")


@pytest.mark.parametrize("values", CASES)
def test_positional_and_keyword_construction_agree(values: tuple[object, ...]) -> None:
    """The snapshot builds guests positionally: the field order is part of the contract."""
    positional = Guest(*values)  # type: ignore[arg-type]
    by_name = Guest(**dict(zip(FIELDS, values, strict=True)))  # type: ignore[arg-type]
    assert positional == by_name and hash(positional) == hash(by_name)
    assert msgspec.structs.astuple(positional) == values
    assert Guest.__struct_fields__ == FIELDS


@pytest.mark.parametrize("values", CASES)
def test_value_semantics(values: tuple[object, ...]) -> None:
    guest = Guest(*values)  # type: ignore[arg-type]
    changed = msgspec.structs.replace(guest, cpu=0.5)
    assert changed.cpu == 0.5 and changed != guest and guest.cpu == values[5]
    assert msgspec.structs.replace(changed, cpu=guest.cpu) == guest
    assert len({guest, Guest(*values)}) == 1  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        guest.cpu = 1.0  # type: ignore[misc]


def test_defaults_are_the_documented_ones() -> None:
    guest = Guest(vmid=100, name="x", type=GuestType.QEMU, node="pve1", status="stopped")
    assert (guest.cpu, guest.maxcpu, guest.mem, guest.maxmem, guest.memhost, guest.template,
            guest.tags, guest.lock, guest.hastate) == (
        0.0, 1.0, 0, 0, None, False, frozenset(), None, None)
    assert guest.host_memory == 0 and not guest.running and not guest.ha_managed


def test_guests_stay_out_of_the_cyclic_collector() -> None:
    """10,000 fresh guests a cycle kept setting off the collector (a tenth of a cycle); their
    fields cannot hold a reference back, so the records are not tracked at all."""
    guest = Guest(*CASES[0])  # type: ignore[arg-type]
    assert guest.tags and not gc.is_tracked(guest)
