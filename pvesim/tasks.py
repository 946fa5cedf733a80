"""PVE worker tasks: UPID strings, status and log lines as `/nodes/{n}/tasks` shows them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field


def format_upid(
    node: str, pid: int, pstart: int, starttime: int, task_type: str, task_id: str, user: str
) -> str:
    """`UPID:node:PID:PSTART:STARTTIME:type:id:user:` with uppercase hex, as pve-common prints."""
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{task_id}:{user}:"


def parse_upid(upid: str) -> dict[str, str | int] | None:
    """The UPID's fields, or None if it is not a well-formed UPID."""
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID" or parts[8] != "":
        return None
    try:
        pid, pstart, starttime = (int(p, 16) for p in parts[2:5])
    except ValueError:
        return None
    return {
        "node": parts[1],
        "pid": pid,
        "pstart": pstart,
        "starttime": starttime,
        "type": parts[5],
        "id": parts[6],
        "user": parts[7],
    }


def split_authid(authid: str) -> tuple[str, str | None]:
    """`user@realm!token` → (`user@realm`, `token`); plain users have no token id."""
    user, sep, token = authid.partition("!")
    return user, (token if sep else None)


def task_user_may_see(user: str, tokenid: str | None, authid: str) -> bool:
    """pve-manager Tasks.pm `$check_task_user`, on a task's `user`/`tokenid` as the list
    shows them: a token sees only its own tasks, a user its own and its tokens'."""
    if tokenid is not None:
        return authid in (f"{user}!{tokenid}", user)
    return authid == user


def log_timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@dataclass
class Task:
    """One worker task; `log` lines carry the sim time they appear at."""

    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    authid: str
    started: float
    endtime: float | None = None
    exitstatus: str | None = None
    log: list[tuple[float, str]] = field(default_factory=list)

    def running_at(self, t: float) -> bool:
        return self.started <= t and (self.endtime is None or self.endtime > t)

    @property
    def running(self) -> bool:
        return self.endtime is None

    def add_log(self, t: float, line: str, timestamped: bool = True) -> None:
        self.log.append((t, f"{log_timestamp(t)} {line}" if timestamped else line))

    def finish(self, t: float, exitstatus: str) -> None:
        self.endtime = t
        self.exitstatus = exitstatus
        self.log.append((t, "TASK OK" if exitstatus == "OK" else f"TASK ERROR: {exitstatus}"))

    def log_lines(self, t: float) -> list[str]:
        return [line for when, line in self.log if when <= t]

    def decoded(self) -> dict[str, str | int]:
        """What pve-common `PVE::UPID::decode` yields (plus the upid): `user` is the full
        authid, token included."""
        return {
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.authid,
        }

    def user_fields(self) -> dict[str, str]:
        user, token = split_authid(self.authid)
        fields = {"user": user}
        if token is not None:
            fields["tokenid"] = token
        return fields

    def status_class(self) -> str:
        """ok|warning|error|unknown, for `statusfilter` (pve-common UPID.pm
        `normalize_status_type`; a running task has no status yet: unknown)."""
        status = self.exitstatus
        if not status or status == "unexpected status":
            return "unknown"
        if status == "OK":
            return "ok"
        if re.fullmatch(r"WARNINGS: \d+", status):
            return "warning"
        return "error"
