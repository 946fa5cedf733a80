"""A small PVE 9 HA stack: the CRM that queues, drops or executes migrate requests, honours
node-affinity (with failback), resource-affinity, node maintenance and fencing/recovery.

What a balancer must cope with is modelled: an API migrate of an HA guest only yields a
`hamigrate` task; the actual `qmigrate` is started later by `root@pam`, or never when the
CRM rejects the request; the CRM may move guests back by itself.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvesim.errors import internal
from pvesim.harules import rule_errors
from pvesim.scenario import HARuleSpec

if TYPE_CHECKING:
    from pvesim.cluster import Cluster, GuestState, Migration
    from pvesim.tasks import Task

LRM_USER = "root@pam"


@dataclass
class HAService:
    """One HA resource: its configuration plus the CRM's view (`crm_state`, `target`)."""

    sid: str
    vmid: int
    state: str
    failback: bool
    max_restart: int | None
    max_relocate: int | None
    comment: str | None
    crm_state: str
    uid: str
    target: str | None = None
    pending: str | None = None
    maintenance_node: str | None = None
    fence_since: float | None = None

    @property
    def type(self) -> str:
        return self.sid.split(":", 1)[0]


def _uid(seed: str) -> str:
    return base64.b64encode(hashlib.md5(seed.encode()).digest()).decode().rstrip("=")[:22]


class HAManager:
    """HA state for one Cluster; its CRM rounds run as scheduled cluster events."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.settings = cluster.scenario.ha_settings
        self.rules: list[HARuleSpec] = list(cluster.scenario.ha_rules)
        #: Infeasible rules and why (the nodes are node_status's: every cluster node here).
        self.rule_errors = rule_errors(self.rules, list(cluster.nodes))
        self.services: dict[str, HAService] = {}
        self.log: list[tuple[float, str]] = []
        for g in cluster.scenario.guests:
            if g.ha is None:
                continue
            # A disabled service goes request_stop -> stopped; none is a CRM state of its own.
            running = g.status == "running" and g.ha.state != "disabled"
            crm_state = "started" if running else "stopped"
            self.services[g.sid] = HAService(
                sid=g.sid,
                vmid=g.vmid,
                state=g.ha.state,
                failback=g.ha.failback,
                max_restart=g.ha.max_restart,
                max_relocate=g.ha.max_relocate,
                comment=g.ha.comment,
                crm_state=crm_state,
                uid=_uid(f"{cluster.seed}:{g.sid}"),
            )
        self._scheduled = False
        self.configured = bool(self.services) or bool(self.rules) or any(
            n.hastate != "online" for n in cluster.nodes.values()
        )
        if self.configured:
            self.start_rounds(cluster.clock.start)

    def start_rounds(self, t: float) -> None:
        """Begin the periodic CRM rounds (HA becomes 'configured')."""
        self.configured = True
        self._scheduled = True
        self.cluster.schedule(t + self.settings.crm_interval, self._round)

    def wake(self) -> None:
        """Something HA-relevant changed: make sure a CRM round comes at the next tick.

        Rounds stop while everything is settled, so a long `advance()` stays cheap; they run
        on the fixed grid start + k * crm_interval, like a periodic daemon would.
        """
        if not self.configured or self._scheduled:
            return
        t = self.cluster.time()
        interval = self.settings.crm_interval
        ticks = int((t - self.cluster.clock.start) // interval) + 1
        self._scheduled = True
        self.cluster.schedule(self.cluster.clock.start + ticks * interval, self._round)

    # ----- queries ---------------------------------------------------------------------

    def service_of(self, g: GuestState) -> HAService | None:
        return self.services.get(g.spec.sid)

    def manages(self, g: GuestState) -> bool:
        svc = self.service_of(g)
        return svc is not None and svc.state != "ignored"

    def node_state(self, name: str) -> str:
        """The CRM's node_status value: online, maintenance, unknown (offline) or fence."""
        node = self.cluster.nodes[name]
        if not node.online.current:
            fenced = any(
                s.fence_since is not None and self.cluster.guests[s.vmid].node.current == name
                for s in self.services.values()
            )
            return "fence" if fenced else "unknown"
        return node.hastate

    def master_node(self) -> str:
        for name in self.cluster.nodes:
            if self.cluster.node_online(name):
                return name
        return self.cluster.entry_node

    def enabled_rules(self, sid: str, rule_type: str) -> list[HARuleSpec]:
        """The rules the CRM applies to `sid`: enabled and feasible (Rules.pm `transform`
        drops every rule with errors)."""
        return [
            r for r in self.rules
            if not r.disable and r.rule not in self.rule_errors and r.type == rule_type
            and sid in r.resources
        ]

    def partners(self, sid: str, affinity: str) -> set[str]:
        result: set[str] = set()
        for rule in self.enabled_rules(sid, "resource-affinity"):
            if rule.affinity == affinity:
                result.update(r for r in rule.resources if r != sid)
        return result

    def _where(self, sid: str) -> set[str]:
        """Nodes a service is on or moving to."""
        svc = self.services.get(sid)
        if svc is None:
            return set()
        places = {self.cluster.guests[svc.vmid].node.current}
        for node in (svc.target, svc.pending):
            if node:
                places.add(node)
        return places

    def negative_blockers(self, sid: str, target: str) -> list[str]:
        """Negative-affinity partners that block moving `sid` to `target`, as pve-ha-manager
        Config.pm `get_resource_motion_info` and Manager.pm `queue_resource_motion` test it:
        in service_status, on `target` and not moving elsewhere. A partner in flight (node X,
        target Y) blocks no node at all."""
        result = []
        for partner in sorted(self.partners(sid, "negative")):
            other = self.services.get(partner)
            if other is None or self.ss_state(other) is None:
                continue
            node = self.cluster.guests[other.vmid].node.current
            if node == target and other.target in (None, target):
                result.append(partner)
        return result

    def dependents(self, sid: str) -> list[str]:
        """`dependent-ha-resources`/`comigrated-resources` (Config.pm
        `get_resource_motion_info`): positive partners that are in service_status."""
        return sorted(
            p for p in self.partners(sid, "positive")
            if p in self.services and self.ss_state(self.services[p]) is not None
        )

    def _crowded(self, sid: str, node: str) -> bool:
        """Whether a negative partner is on or moving to `node`: node selection (Manager.pm
        `select_service_node`, apply_negative_resource_affinity) avoids such nodes."""
        return any(node in self._where(p) for p in self.partners(sid, "negative"))

    def _ha_online(self, name: str) -> bool:
        return self.cluster.node_online(name) and self.cluster.nodes[name].hastate == "online"

    def _priorities(self, svc: HAService) -> dict[str, int]:
        """Allowed online nodes with their priority (-1 = allowed but not listed)."""
        rules = self.enabled_rules(svc.sid, "node-affinity")
        online = [n for n in self.cluster.nodes if self._ha_online(n)]
        if not rules:
            return dict.fromkeys(online, 0)
        rule = rules[0]
        listed = dict(rule.nodes)
        if rule.strict:
            return {n: listed[n] for n in online if n in listed}
        return {n: listed.get(n, -1) for n in online}

    def _choose(self, svc: HAService, exclude: set[str]) -> str | None:
        prios = {
            n: p for n, p in self._priorities(svc).items()
            if n not in exclude and not self._crowded(svc.sid, n)
        }
        if not prios:
            return None
        top = max(prios.values())
        best = [n for n, p in prios.items() if p == top]
        t = self.cluster.time()

        def used(name: str) -> float:
            _cpu, mem = self.cluster.node_load(name, t)
            return mem / self.cluster.nodes[name].spec.memory

        return min(best, key=lambda n: (used(n), n))

    # ----- requests --------------------------------------------------------------------

    def request_hamigrate(
        self, g: GuestState, node: str, target: str, authid: str, t: float
    ) -> Task:
        """The API path for HA guests: a short `hamigrate` task running `ha-manager migrate`
        (qemu-server Qemu.pm `migrate_vm`). The CLI's API call queues the command first and
        then fails the task when a negative partner blocks the target (pve-ha-manager
        API2/HA/Resources.pm `migrate`, CLI/ha_manager.pm); the CRM drops that command."""
        cluster = self.cluster
        svc = self.services[g.spec.sid]
        task = cluster.new_task(node, "hamigrate", str(g.vmid), authid, t)
        cluster._record(task, g.vmid, node, target)
        kind = "VM" if g.type == "qemu" else "CT"
        task.add_log(t, f"Requesting HA migration for {kind} {g.vmid} to node {target}", False)
        end = t + cluster.scenario.migration.hamigrate_seconds

        def finish(when: float) -> None:
            cmd = f"ha-manager migrate {svc.sid} {target}"
            failed = f"command '{cmd}' failed: exit code 255"
            if svc.crm_state == "error":
                task.add_log(when, f"service '{svc.sid}' in error state, must be disabled and "
                             "fixed first", False)
                cluster._finish_task(task, when, failed)
                return
            self.queue(svc.sid, target, when)
            blockers = self.negative_blockers(svc.sid, target)
            if blockers:
                task.add_log(when, f"cannot migrate resource '{svc.sid}' to node '{target}':",
                             False)
                for partner in blockers:
                    task.add_log(when, f"- resource '{partner}' on target node '{target}' in "
                                 f"negative affinity with resource '{svc.sid}'", False)
                cluster._finish_task(task, when, failed)
                return
            cluster._finish_task(task, when, "OK")

        cluster.schedule(end, finish)
        return task

    def queue(self, sid: str, target: str, t: float) -> None:
        svc = self.services[sid]
        svc.pending = target
        self.log.append((t, f"got crm command: migrate {sid} {target}"))
        self.wake()

    def api_migrate(self, sid: str, target: str) -> dict[str, Any]:
        """POST /cluster/ha/resources/{sid}/migrate (pve-ha-manager API2/HA/Resources.pm
        `migrate`): queue it, then report the blockers and co-migrated partners. The node is
        not checked here; the CRM drops a command for a node that is not online."""
        svc = self.services.get(sid)
        if svc is None or svc.state == "ignored":
            raise internal(f"resource '{sid}' is not HA managed")
        if svc.crm_state == "error":
            raise internal(f"service '{sid}' in error state, must be disabled and fixed first")
        self.queue(sid, target, self.cluster.time())
        result: dict[str, Any] = {"sid": sid, "requested-node": target}
        dependents = self.dependents(sid)
        if dependents:
            result["comigrated-resources"] = dependents
        blockers = self.negative_blockers(sid, target)
        if blockers:
            result["blocking-resources"] = [
                {"sid": b, "cause": "resource-affinity"} for b in blockers
            ]
        return result

    # ----- the CRM ---------------------------------------------------------------------

    def _round(self, t: float) -> None:
        self._scheduled = False
        if not self.cluster.quorate:
            return  # set_quorate(True) wakes us
        logged = len(self.log)
        for sid in sorted(self.services):
            self._manage(self.services[sid], t)
        unsettled = any(
            s.pending is not None or s.crm_state in ("migrate", "relocate", "fence", "recovery")
            for s in self.services.values()
        )
        if unsettled or len(self.log) != logged:
            self._scheduled = True
            self.cluster.schedule(t + self.settings.crm_interval, self._round)

    def _busy_workers(self, node: str) -> int:
        return sum(
            1 for m in self.cluster.migrations.values()
            if not m.done and m.ha_driven and m.source == node
        )

    def _manage(self, svc: HAService, t: float) -> None:
        cluster = self.cluster
        g = cluster.guests[svc.vmid]
        node = g.node.current
        if svc.state in ("disabled", "ignored") or svc.crm_state == "error":
            svc.pending = None
            return
        if not cluster.node_online(node):
            self._fence_and_recover(svc, g, node, t)
            return
        if svc.crm_state in ("fence", "recovery"):
            svc.fence_since = None
            svc.crm_state = "started" if g.status.current == "running" else "stopped"
        if svc.crm_state in ("migrate", "relocate"):
            return
        if svc.pending is not None:
            target, svc.pending = svc.pending, None
            reason = self._reject_reason(svc, node, target)
            if reason:
                self.log.append((t, f"ignore crm command - {reason}"))
                return
            self._migrate(svc, g, target, t)
            for partner in sorted(self.partners(svc.sid, "positive")):
                other = self.services.get(partner)
                if other and target not in self._where(partner) and other.crm_state == "started":
                    self._migrate(other, cluster.guests[other.vmid], target, t)
            return
        if cluster.nodes[node].hastate == "maintenance":
            away = self._choose(svc, {node})
            if away is not None:
                svc.maintenance_node = node
                self._migrate(svc, g, away, t)
            return
        back = svc.maintenance_node
        if back is not None and back != node and self._ha_online(back):
            svc.maintenance_node = None
            if back in self._priorities(svc) and not self._crowded(svc.sid, back):
                self._migrate(svc, g, back, t)
                return
        prios = self._priorities(svc)
        if not prios:
            return
        top = max(prios.values())
        here = prios.get(node)
        misplaced = here is None or (svc.failback and here < top)
        if misplaced:
            better = self._choose(svc, {node})
            if better is not None and (here is None or prios[better] > here):
                self._migrate(svc, g, better, t)

    def _reject_reason(self, svc: HAService, node: str, target: str) -> str | None:
        """Why the CRM drops a queued migrate (Manager.pm update_crm_commands,
        queue_resource_motion, next_state_started), or None to start it."""
        if target == node:
            return f"service '{svc.sid}' already on node '{target}'"
        if target not in self.cluster.nodes or not self._ha_online(target):
            return f"target node '{target}' is not online"
        # No node-affinity check: next_state_started (pve-ha-manager Manager.pm) starts the
        # migration anyway, and a later round moves the guest back where the rule wants it.
        blockers = self.negative_blockers(svc.sid, target)
        if blockers:
            return f"resource '{blockers[0]}' is on or moving to node '{target}'"
        return None

    def _migrate(self, svc: HAService, g: GuestState, target: str, t: float) -> None:
        """Mark the service as migrating; the target's LRM starts the qmigrate shortly."""
        source = g.node.current
        if self._busy_workers(source) >= self.settings.max_workers:
            svc.pending = target  # try again next round
            return
        svc.crm_state = "migrate"
        svc.target = target
        self.log.append((
            t,
            f"service '{svc.sid}': state changed to 'migrate' "
            f"(node = {source}, target = {target})",
        ))

        def lrm_start(when: float) -> None:
            cluster = self.cluster
            if svc.crm_state != "migrate" or g.node.current != source:
                return
            if g.lock:
                svc.crm_state = "started" if g.status.current == "running" else "stopped"
                svc.target = None
                self.wake()
                return
            cluster.start_move(
                g,
                target,
                LRM_USER,
                when,
                online=g.status.current == "running",
                with_local_disks=True,
                force=True,
                restart=g.type == "lxc",
                ha_driven=True,
            )

        self.cluster.schedule(t + self.settings.lrm_delay, lrm_start)

    def on_move_finished(self, g: GuestState, mig: Migration, t: float, success: bool) -> None:
        svc = self.service_of(g)
        if svc is None or svc.crm_state not in ("migrate", "relocate"):
            return
        svc.crm_state = "started" if g.status.current == "running" else "stopped"
        svc.target = None
        if not success:
            self.log.append((t, f"service '{svc.sid}' - migration failed"))
        self.wake()

    def _fence_and_recover(self, svc: HAService, g: GuestState, node: str, t: float) -> None:
        offline_since = self.cluster.nodes[node].offline_since or t
        if svc.fence_since is None:
            svc.fence_since = offline_since
            svc.crm_state = "fence"
        if t - offline_since < self.settings.fence_delay:
            return
        svc.crm_state = "recovery"
        target = self._choose(svc, {node})
        if target is None:
            return
        self.cluster.recover_guest(g, target, t)
        svc.fence_since = None
        svc.target = None
        svc.crm_state = "started" if g.status.current == "running" else "stopped"
        message = f"recover service '{svc.sid}' from fenced node '{node}' to node '{target}'"
        self.log.append((t, message))

    # ----- views -----------------------------------------------------------------------

    def ss_state(self, svc: HAService) -> str | None:
        """The service's `state` in manager_status `service_status`; None when it has no
        entry there (ignored services are removed from it: pve-ha-manager Manager.pm)."""
        if svc.state == "ignored":
            return None
        return svc.crm_state

    def service_status(self, g: GuestState) -> dict[str, Any]:
        """The `ha` object of a guest's status/current, as pve-ha-manager Config.pm
        `get_service_status` builds it: `{"managed": 0}` for no or an ignored resource,
        else `managed: 1` and the CRM's state (migrate, fence, ...), not the requested one."""
        svc = self.service_of(g)
        if svc is None or not self.manages(g):
            return {"managed": 0}
        return {"managed": 1, "state": self.ss_state(svc)}

    def guest_hastate(self, g: GuestState) -> str | None:
        """`hastate` in /cluster/resources (pve-manager Cluster.pm `resources`): the
        service_status state, else the configured state (so `ignored` for ignored ones)."""
        svc = self.service_of(g)
        if svc is None:
            return None
        return self.ss_state(svc) or svc.state

    def verbose_state(self, svc: HAService) -> str:
        """status/current's `state`: pve-ha-manager Tools.pm `get_verbose_service_state`."""
        current = self.ss_state(svc)
        if svc.state == "ignored":
            return "ignored"
        if current is None:
            return "queued"
        if current == "stopped":
            return {"started": "starting", "disabled": "disabled"}.get(svc.state, current)
        if current == "started":
            g = self.cluster.guests[svc.vmid]
            if g.status.current != "running":
                return "starting"
            return "stopping" if svc.state in ("stopped", "disabled") else current
        if current == "error" and svc.state == "disabled":
            return "clearing error flag"
        return current
