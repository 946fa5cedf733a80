"""`/cluster/resources` decoded straight into typed entries, the cycle's one large payload.

At 10,000 guests the answer is 3.4 MiB of JSON every cycle. Decoding it into dicts and then
checking every field's JSON type costs more than fetching it; msgspec decodes it into
`ResourceEntry` records in a third of the time `json.loads` takes, skipping the fields we never
read, and checks the JSON types on the way. The types are those of the return schema of
pve-manager's `PVE::API2::Cluster::resources` (PVE/API2/Cluster.pm, 14a22df; see
pvesim/CONFORMANCE.md, section 2.1): strings, `number` (a JSON int or float), `integer`,
and `template` as the 0/1 Perl's JSON writer sends for a `boolean`.

PVE's JSON writer follows Perl's scalars, so a value can reach us in another JSON type than
the schema says. Then the typed decode fails as a whole and the caller reads the same bytes
the generic way: every entry is converted on its own and an entry that does not fit goes to
the snapshot's careful path, which says what is wrong with it. One odd entry costs its cycle
the fast path, never a guest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

#: A guest's cpu is a share of its own vCPUs; I/O threads push it past 1.0, but not this far.
#: A container's first sample after a restart is slightly negative (LXC.pm), never this low.
GUEST_CPU_MAX = 16.0
#: Sizes no real host or guest has: a payload claiming them is garbage, not a huge target.
MAX_NODE_THREADS = 16384
MAX_GUEST_VCPUS = 4096
MAX_MEMORY = 1 << 50  # 1 PiB

#: What the typed decode takes as is. A value outside these (or a null number) is not what
#: PVE's code writes: the answer is then read the generic way and the entry checked field by
#: field (`snapshot._careful_guest`), which reads it or says what is wrong.
GuestCpu = Annotated[float, Meta(ge=-GUEST_CPU_MAX, le=GUEST_CPU_MAX)]
#: A node's threads or a guest's vCPUs (a guest's bound, MAX_GUEST_VCPUS, is the snapshot's).
Threads = Annotated[float, Meta(gt=0, le=MAX_NODE_THREADS)]
Bytes = Annotated[int, Meta(ge=0, le=MAX_MEMORY)]
Flag = Annotated[int, Meta(ge=0, le=1)]


class ResourceEntry(msgspec.Struct, gc=False):
    """One `/cluster/resources` entry with the fields we read, each absent (UNSET) or of the
    schema's JSON type within physical bounds; strings may also be null (Perl's undef; for
    `hastate`, an HA resource the CRM has not seen yet). Read-only by convention: nothing
    writes to an entry after it is decoded."""

    type: str | UnsetType | None = UNSET
    id: str | UnsetType | None = UNSET
    vmid: int | UnsetType = UNSET
    node: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET
    name: str | UnsetType | None = UNSET
    cpu: GuestCpu | UnsetType = UNSET
    maxcpu: Threads | UnsetType = UNSET
    mem: Bytes | UnsetType = UNSET
    maxmem: Bytes | UnsetType = UNSET
    memhost: Bytes | UnsetType = UNSET
    template: Flag | UnsetType = UNSET
    tags: str | UnsetType | None = UNSET
    lock: str | UnsetType | None = UNSET
    hastate: str | UnsetType | None = UNSET

    def get(self, key: str, default: Any = None) -> Any:
        """`Mapping.get` for the fields this entry keeps (readers of either shape)."""
        value = getattr(self, key, UNSET)
        return default if value is UNSET else value

    def to_dict(self) -> dict[str, Any]:
        """The fields PVE sent, as the generic decoder would have returned them."""
        return {name: value for name in self.__struct_fields__
                if (value := getattr(self, name)) is not UNSET}


class _Answer(msgspec.Struct):
    data: list[ResourceEntry]


_DECODER = msgspec.json.Decoder(_Answer)


def decode_resources(body: bytes) -> list[ResourceEntry] | None:
    """The entries of a `/cluster/resources` answer, or None when it is not JSON of the
    schema's types (read it the generic way then)."""
    try:
        return _DECODER.decode(body).data
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def as_entry(entry: Mapping[str, Any]) -> ResourceEntry | None:
    """A generically decoded entry as a `ResourceEntry`, or None when a field we read has
    another JSON type than the schema's (`True` is not an integer here, as in JSON)."""
    try:
        return msgspec.convert(entry, ResourceEntry, strict=True)
    except msgspec.ValidationError:
        return None

