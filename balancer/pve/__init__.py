"""Everything the balancer knows about the cluster comes through this package."""

from balancer.pve.check import CheckReport, run_check
from balancer.pve.client import PveClient
from balancer.pve.errors import (
    PveApiError,
    PveAuthError,
    PveError,
    PveMigrationUnconfirmed,
    PvePermissionError,
    PveUnreachable,
    SnapshotUnusable,
)
from balancer.pve.records import (
    ClusterOptions,
    ClusterStatus,
    HaRules,
    HaService,
    HaStatus,
    Precondition,
    RunningMigration,
    TaskInfo,
    TaskStatus,
    VmStatus,
)
from balancer.pve.snapshot import SnapshotRead, build_snapshot, read_snapshot

__all__ = [
    "CheckReport",
    "ClusterOptions",
    "ClusterStatus",
    "HaRules",
    "HaService",
    "HaStatus",
    "Precondition",
    "PveApiError",
    "PveAuthError",
    "PveClient",
    "PveError",
    "PveMigrationUnconfirmed",
    "PvePermissionError",
    "PveUnreachable",
    "RunningMigration",
    "SnapshotRead",
    "SnapshotUnusable",
    "TaskInfo",
    "TaskStatus",
    "VmStatus",
    "build_snapshot",
    "read_snapshot",
    "run_check",
]
