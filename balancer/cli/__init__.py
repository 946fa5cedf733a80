"""`pve-balancer` command line: what an operator touches.

Exit codes (stable, for scripts):
  0  success (for `check`: no problems found)
  1  the command ran and found a problem (e.g. `check` failed a privilege test)
  2  usage error (argparse)
  3  configuration error
  4  PVE or Redis unreachable or refused us
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

import yaml

from balancer import installed_version
from balancer.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Command,
    load,
    open_store,
)
from balancer.cli.drain import cmd_drain, cmd_drains, cmd_undrain
from balancer.cli.pause import cmd_pause, cmd_resume
from balancer.cli.plan import SnapshotFileError, cmd_plan
from balancer.cli.status import cmd_history, cmd_status
from balancer.config import SCHEMA, BalancingConfig, Config, ConfigError
from balancer.engine.constraints import derive_constraints
from balancer.model import ClusterSnapshot
from balancer.pve import PveAuthError, PveClient, PveError, PveUnreachable, run_check
from balancer.render import seconds

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_PROBLEM", "EXIT_UNAVAILABLE", "EXIT_USAGE",
           "build_parser", "main"]


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets redacted."""
    config = load(args)
    effective = config.redacted()
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print(yaml.safe_dump(effective, sort_keys=False).rstrip())
        print("configuration OK")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Connect to PVE with the config, verify the privileges the balancer needs and print a
    cluster summary, or a precise error."""
    config = load(args)
    report = run_check(PveClient(config.proxmox))
    for line in report.lines:
        print(line)
    if report.snapshot is not None:
        for line in neighbour_lines(report.snapshot, config.balancing):
            print(line)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    redis_ok = _check_redis(config)
    if report.ok and redis_ok:
        print("check OK")
        return EXIT_OK
    return EXIT_UNAVAILABLE if report.host is None or not redis_ok else EXIT_PROBLEM


def _check_redis(config: Config) -> bool:
    """The one coordination point: reachable, and whether a balancer has been using it."""
    store = open_store(config)
    where = config.redis.redacted_url
    if store is None:
        print(f"PROBLEM: Redis at {where} is not reachable (redis.url, $REDIS_URL); workers, "
              "beat and status need it")
        return False
    version = store.client.info("server").get("redis_version", "?")
    last = store.liveness.last()
    seen = ("no evaluate recorded yet (are worker and beat running?)" if last is None
            else f"last evaluate {seconds(last.age_seconds)} ago")
    print(f"Redis: {where} reachable (version {version}); {seen}")
    return True


def neighbour_lines(snapshot: ClusterSnapshot, balancing: BalancingConfig) -> list[str]:
    """How the balancer will treat HA-managed guests and ProxLB-tagged guests here."""
    ha_guests = sum(1 for g in snapshot.guests if g.ha_managed)
    if snapshot.ha_auto_rebalance and balancing.leave_ha_to_pve:
        ha = f"leaving {ha_guests} HA-managed guests to PVE's auto-rebalance (leave_ha_to_pve)"
    elif snapshot.ha_auto_rebalance:
        ha = (f"balancing {ha_guests} HA-managed guests although PVE's auto-rebalance is on "
              "(leave_ha_to_pve: false): expect both to move them")
    else:
        ha = f"balancing HA-managed guests too ({ha_guests}); PVE's auto-rebalance is off"
    found = derive_constraints(snapshot, replace(balancing, proxlb_tags=True))
    groups = {g.label for gs in found.anti_affinity.values() for g in gs}
    counts = (f"{len(found.plb_ignore)} plb_ignore, {len(found.pins)} plb_pin, "
              f"{len(found.plb_affinity)} plb_affinity, "
              f"{sum(1 for g in groups if 'plb_anti_affinity' in g)} plb_anti_affinity groups")
    state = "honoured" if balancing.proxlb_tags else "IGNORED (balancing.proxlb_tags: false)"
    return [f"HA guests: {ha}", f"ProxLB tags: {counts}; {state}"]


def cmd_exporter(args: argparse.Namespace) -> int:
    """Serve Prometheus metrics (read from Redis) for every worker of the cluster."""
    from balancer.exporter import run_exporter
    from balancer.logs import configure_logging

    config = load(args)
    configure_logging(config.logging.format, config.logging.level)
    run_exporter(config, port=args.port, addr=args.listen or config.metrics.listen)
    return EXIT_OK


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the status page (read-only, from Redis): nodes against the thresholds, the
    migration in flight, every decision with its reasons, history, drains, pause and quiet
    hours. GET /api/status is the JSON of `status --json`. Basic auth from $WEB_BASIC_AUTH."""
    from balancer.logs import configure_logging
    from balancer.web import parse_basic_auth, run_web

    config = load(args)
    configure_logging(config.logging.format, config.logging.level)
    try:
        parse_basic_auth(os.environ.get("WEB_BASIC_AUTH"))
    except ValueError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    run_web(config, port=args.port or config.web.port, addr=args.listen or config.web.listen)
    return EXIT_OK


CONFIG_HELP = "config file (default: $BALANCER_CONFIG or /etc/pve-balancer/balancer.yaml)"


def _version() -> str:
    return f"pve-balancer {installed_version() or '(not installed)'}"


def _listen_options(p: argparse.ArgumentParser, section: str) -> None:
    """`--port` and `--listen` of a server command, defaulting to `<section>.port/.listen`."""
    default_port = SCHEMA[section]["port"].default
    p.add_argument("--port", type=int, default=None,
                   help=f"listen port (default: {section}.port from the config, {default_port})")
    p.add_argument("--listen", default=None, metavar="ADDRESS",
                   help=f"address to bind (default: {section}.listen, 127.0.0.1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pve-balancer",
        description="Live-migration load balancer for Proxmox VE 9+ (fewest migrations, "
        "no node left saturated).",
        epilog="Exit codes: 0 ok, 1 problem found, 2 usage, 3 config error, "
        "4 PVE/Redis unavailable.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # `--config` also after the command, as people type it; given twice, the later wins.
    config_after = argparse.ArgumentParser(add_help=False)
    config_after.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                              help=CONFIG_HELP)
    command = functools.partial(sub.add_parser, parents=[config_after])

    p = command("check-config", help="validate the config and print it, secrets redacted",
                       description=cmd_check_config.__doc__)
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")
    p.set_defaults(func=cmd_check_config)

    p = command("check", help="connect to PVE, verify privileges, summarise the cluster",
                       description=cmd_check.__doc__)
    p.set_defaults(func=cmd_check)

    p = command("plan", help="show what the balancer would do now, and why",
                       description=cmd_plan.__doc__)
    p.add_argument("--json", action="store_true",
                   help='print {"action", "vmid", "source", "target", "reason", "explanation"}')
    p.add_argument("--snapshot", metavar="FILE",
                   help="decide on a saved snapshot instead of the live cluster")
    p.add_argument("--save-snapshot", metavar="FILE",
                   help="also save the live cluster's raw API payloads to FILE")
    p.set_defaults(func=cmd_plan)

    p = command("status", help="lock, running migration, node averages, cooldowns",
                       description=cmd_status.__doc__)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--decisions", type=int, default=5, metavar="N",
                   help="how many recent decisions to show (default 5)")
    p.set_defaults(func=cmd_status)

    p = command("history", help="last migrations with outcome and duration",
                       description=cmd_history.__doc__)
    p.add_argument("--limit", "-n", type=int, default=20, metavar="N",
                   help="how many migrations to show (default 20)")
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.set_defaults(func=cmd_history)

    p = command("pause", help="hold back every new migration, cluster-wide",
                       description=cmd_pause.__doc__)
    p.add_argument("--for", dest="duration", metavar="DURATION",
                   help="how long (90s, 30m, 2h, 1h30m, 1d); default: until resume")
    p.add_argument("--reason", metavar="TEXT", help="why (shown in status, logs and Flower)")
    p.set_defaults(func=cmd_pause)

    p = command("resume", help="lift a pause", description=cmd_resume.__doc__)
    p.set_defaults(func=cmd_resume)

    p = command("drain", help="empty a node for maintenance; nothing moves onto it",
                description=cmd_drain.__doc__)
    p.add_argument("node", metavar="NODE", help="the PVE node name")
    p.add_argument("--reason", metavar="TEXT", help="why (shown in drains, status and logs)")
    p.add_argument("--wait", action="store_true",
                   help="show progress until the node is empty (exit 0) or stuck (exit 1)")
    p.set_defaults(func=cmd_drain)

    p = command("undrain", help="let a drained node take VMs again",
                description=cmd_undrain.__doc__)
    p.add_argument("node", metavar="NODE", help="the PVE node name")
    p.set_defaults(func=cmd_undrain)

    p = command("drains", help="drained nodes and their progress", description=cmd_drains.__doc__)
    p.add_argument("--json", action="store_true", help="print the drains as JSON")
    p.set_defaults(func=cmd_drains)

    p = command("web", help="serve the status page (read-only, from Redis)",
                description=cmd_web.__doc__)
    _listen_options(p, "web")
    p.set_defaults(func=cmd_web)

    p = command("exporter", help="serve Prometheus metrics from the shared state",
                       description=cmd_exporter.__doc__)
    _listen_options(p, "metrics")
    p.set_defaults(func=cmd_exporter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SnapshotFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PveAuthError, PveUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
