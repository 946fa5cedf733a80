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
import json
import sys
from collections.abc import Callable, Sequence

import yaml

from balancer.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4

Command = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets redacted."""
    config = _load(args)
    effective = config.redacted()
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print(yaml.safe_dump(effective, sort_keys=False).rstrip())
        print("configuration OK")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pve-balancer",
        description="Live-migration load balancer for Proxmox VE 9+ (fewest migrations, "
        "no node left saturated).",
        epilog="Exit codes: 0 ok, 1 problem found, 2 usage, 3 config error, "
        "4 PVE/Redis unavailable.",
    )
    parser.add_argument(
        "--config", metavar="FILE",
        help="config file (default: $BALANCER_CONFIG or /etc/pve-balancer/balancer.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate the config and print it, secrets redacted",
                       description=cmd_check_config.__doc__)
    p.add_argument("--json", action="store_true", help="print the effective config as JSON")
    p.set_defaults(func=cmd_check_config)
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


if __name__ == "__main__":
    sys.exit(main())
