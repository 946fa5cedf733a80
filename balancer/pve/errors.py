"""Typed errors of the PVE client. Messages are for people: they say which host, which call and
what PVE said, and never carry the API token's secret."""

from __future__ import annotations

from collections.abc import Sequence


class PveError(Exception):
    """Base of everything this package raises on purpose."""


class PveAuthError(PveError):
    """PVE rejected the API token (HTTP 401)."""

    def __init__(self, user: str, token_name: str, host: str) -> None:
        self.user = user
        self.token_name = token_name
        self.host = host
        super().__init__(
            f"authentication failed for {user}!{token_name} on host {host} "
            "(check token_name/token_value)"
        )


class PvePermissionError(PveError):
    """PVE refused a call for lack of a privilege (HTTP 403).

    `privilege` and `acl_path` come from PVE's text
    `Permission check failed (/vms/100, VM.Migrate)`; None when PVE said something else.
    """

    def __init__(self, *, method: str, api_path: str, host: str, pve_message: str,
                 privilege: str | None, acl_path: str | None) -> None:
        self.method = method
        self.api_path = api_path
        self.host = host
        self.pve_message = pve_message
        self.privilege = privilege
        self.acl_path = acl_path
        if privilege and acl_path:
            need = f"the token needs {privilege} on {acl_path}"
        else:
            need = "the token lacks a privilege"
        super().__init__(
            f"permission denied for {method} /{api_path} on host {host}: {need} "
            f"(PVE: {pve_message})"
        )


class PveUnreachable(PveError):
    """No configured host gave an answer (connection errors, timeouts, 5xx)."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = tuple(failures)
        seen: dict[str, dict[str, int]] = {}  # host -> reason -> count, in order
        for host, reason in self.failures:
            counts = seen.setdefault(host, {})
            counts[reason] = counts.get(reason, 0) + 1
        reasons = "; ".join(
            f"{host}: {reason}" + (f" (x{count})" if count > 1 else "")
            for host, counts in seen.items() for reason, count in counts.items())
        super().__init__(f"no PVE host answered; tried: {', '.join(seen)} ({reasons})")


class PveApiError(PveError):
    """PVE answered with an error status; `message` is PVE's own text."""

    def __init__(self, status: int, message: str, *, method: str = "", api_path: str = "",
                 host: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.api_path = api_path
        self.host = host
        where = f" for {method} /{api_path}" if method else ""
        on = f" on host {host}" if host else ""
        super().__init__(f"PVE error {status}{where}{on}: {message}")


class PveMigrationUnconfirmed(PveError):
    """A migrate POST failed in a way that leaves it open whether PVE started the migration,
    and no task of ours for the guest could be found afterwards. It was not sent again; the next
    cycle sees the truth (task list, lock, guest's node).

    `locked`: the guest carries `lock: migrate` (so something is moving it); None when even
    that could not be read."""

    def __init__(self, vmid: int, target: str, reason: str, *, locked: bool | None) -> None:
        self.vmid = vmid
        self.target = target
        self.reason = reason
        self.locked = locked
        if locked is None:
            found = "the check for a started migration failed too"
        elif locked:
            found = "the guest is locked for migration, so one may be running"
        else:
            found = "no migration task or lock was found"
        super().__init__(
            f"migration of {vmid} to {target} is unconfirmed ({reason}); {found}; not retried")


class SnapshotUnusable(PveError):
    """What PVE returned cannot be turned into a snapshot the engine may act on; skip the cycle."""
