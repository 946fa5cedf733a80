"""Projected node usage: the one place where guest load is converted to node units.

A guest's CPU costs `cpu_cores` threads wherever it runs, so on a node it is that divided by
the node's threads. Memory freed on the source is what the guest occupies now
(`host_memory`); memory claimed on the target is its `maxmem` (it may grow to it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from balancer.model import Guest, Node

from .types import CpuReading, Utilisation


class Resource(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"

    @property
    def other(self) -> Resource:
        return Resource.MEMORY if self is Resource.CPU else Resource.CPU


def _rescale(cores: float, maxcpu: int) -> float:
    """Threads as a share of a node's threads; a node without capacity data absorbs nothing."""
    return cores / maxcpu if maxcpu > 0 else 0.0


def cpu_share(guest: Guest, node: Node | NodeView) -> float:
    """The guest's CPU use as a share of `node`'s threads (e.g. to shift an EMA after a move)."""
    return _rescale(guest.cpu_cores, node.maxcpu)


class NodeView(NamedTuple):
    """A node's load as the engine projects it. `cpu` is the EMA where one exists.

    A NamedTuple rather than a dataclass: one is built per (guest, target) pair, and tuples
    are immutable and several times cheaper to create.
    """

    name: str
    cpu: float
    mem: int
    maxcpu: int
    maxmem: int

    @staticmethod
    def of(node: Node, reading: CpuReading | None) -> NodeView:
        cpu = reading.value if reading is not None else node.cpu
        return NodeView(node.name, cpu, node.mem, node.maxcpu, node.maxmem)

    @property
    def memory(self) -> float:
        return self.mem / self.maxmem if self.maxmem > 0 else 0.0

    @property
    def utilisation(self) -> Utilisation:
        return Utilisation(self.cpu, self.memory)

    def usage(self, resource: Resource) -> float:
        return self.cpu if resource is Resource.CPU else self.memory

    def with_guest(self, guest: Guest) -> NodeView:
        """This node after receiving `guest`: its cores rescaled here, its full `maxmem`."""
        cpu = self.cpu + _rescale(guest.cpu_cores, self.maxcpu)
        return NodeView(self.name, cpu, self.mem + guest.maxmem, self.maxcpu, self.maxmem)

    def without_guest(self, guest: Guest) -> NodeView:
        """This node after `guest` left: its cores and its current host footprint freed."""
        cpu = max(0.0, self.cpu - _rescale(guest.cpu_cores, self.maxcpu))
        mem = max(0, self.mem - guest.host_memory)
        return NodeView(self.name, cpu, mem, self.maxcpu, self.maxmem)
