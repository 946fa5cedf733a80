"""Guest checks: may this guest be moved at all, wherever to?

Each check returns a `Rejection` or None, and every failing check is reported (descheduler's
"pod fails the following checks"), so one look at a verdict says all that keeps a VM put.
"""

from __future__ import annotations

from collections.abc import Callable

from balancer.model import HA_BUSY_STATES, Guest, GuestType

from .context import Context
from .rules import Rule, reject
from .types import Rejection

GuestCheck = Callable[[Guest, Context], Rejection | None]


def _vm(guest: Guest) -> str:
    return f"vm {guest.vmid}"


def is_qemu(guest: Guest, ctx: Context) -> Rejection | None:
    """Containers cannot live-migrate; moving one restarts it."""
    if guest.type is GuestType.QEMU:
        return None
    return reject(Rule.CONTAINER, _vm(guest), f"is a {guest.type} container")


def is_running(guest: Guest, ctx: Context) -> Rejection | None:
    """Only running VMs carry load; `unknown` means PVE has no current data for it."""
    if guest.running:
        return None
    if guest.status == "unknown":
        return reject(Rule.STATUS_UNKNOWN, _vm(guest), "has status unknown (no current data)")
    return reject(Rule.NOT_RUNNING, _vm(guest), f"is {guest.status}, not running")


def not_template(guest: Guest, ctx: Context) -> Rejection | None:
    return reject(Rule.TEMPLATE, _vm(guest), "is a template") if guest.template else None


def not_locked(guest: Guest, ctx: Context) -> Rejection | None:
    """A lock means PVE is already doing something to the guest (backup, snapshot, ...)."""
    if guest.lock is None:
        return None
    return reject(Rule.LOCKED, _vm(guest), f"is locked ({guest.lock})")


def not_excluded_by_tag(guest: Guest, ctx: Context) -> Rejection | None:
    tag = ctx.constraints.excluded_tag.get(guest.vmid)
    return reject(Rule.EXCLUDED_TAG, _vm(guest), f"is tagged {tag}") if tag else None


def not_blocked(guest: Guest, ctx: Context) -> Rejection | None:
    """Cooldown, backoff or known-unmigratable, as the runtime told us."""
    reason = ctx.blocked.get(guest.vmid)
    return reject(Rule.BLOCKED, _vm(guest), f"is blocked: {reason}") if reason else None


def not_plb_ignored(guest: Guest, ctx: Context) -> Rejection | None:
    tag = ctx.constraints.plb_ignore.get(guest.vmid)
    return reject(Rule.PLB_IGNORE, _vm(guest), f"is tagged {tag}") if tag else None


def no_node_affinity(guest: Guest, ctx: Context) -> Rejection | None:
    """HA enforces node-affinity rules and would move the guest back (ping-pong)."""
    rule = ctx.constraints.node_affinity.get(guest.vmid)
    if rule is None:
        return None
    return reject(Rule.NODE_AFFINITY, _vm(guest), f"is in node-affinity rule {rule}")


def no_positive_affinity(guest: Guest, ctx: Context) -> Rejection | None:
    rule = ctx.constraints.positive_affinity.get(guest.vmid)
    if rule is None:
        return None
    return reject(Rule.POSITIVE_AFFINITY, _vm(guest), f"is kept together by rule {rule}")


def not_plb_affinity(guest: Guest, ctx: Context) -> Rejection | None:
    tag = ctx.constraints.plb_affinity.get(guest.vmid)
    return reject(Rule.PLB_AFFINITY, _vm(guest), f"is kept together by tag {tag}") if tag else None


def not_ha_busy(guest: Guest, ctx: Context) -> Rejection | None:
    """HA is moving the guest or has a request pending for it."""
    if guest.hastate not in HA_BUSY_STATES:
        return None
    return reject(Rule.HA_BUSY, _vm(guest), f"has HA state {guest.hastate}")


def not_left_to_ha(guest: Guest, ctx: Context) -> Rejection | None:
    """With PVE's own HA auto-rebalancer on, two balancers on one guest would ping-pong."""
    if not (guest.ha_managed and ctx.snapshot.ha_auto_rebalance and ctx.config.leave_ha_to_pve):
        return None
    return reject(Rule.HA_MANAGED, _vm(guest),
                  "is HA-managed and the HA auto-rebalancer is on (leave_ha_to_pve)")


GUEST_CHECKS: tuple[GuestCheck, ...] = (
    is_qemu, is_running, not_template, not_locked, not_excluded_by_tag, not_blocked,
    not_plb_ignored, no_node_affinity, no_positive_affinity, not_plb_affinity, not_ha_busy,
    not_left_to_ha,
)


def guest_rejections(guest: Guest, ctx: Context) -> tuple[Rejection, ...]:
    """Every reason this guest may not be moved; empty means it is a candidate."""
    found = (check(guest, ctx) for check in GUEST_CHECKS)
    return tuple(r for r in found if r is not None)
