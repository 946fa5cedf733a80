"""pve-balancer: automatic live-migration load balancing for Proxmox VE."""

from __future__ import annotations

from importlib import metadata


def installed_version() -> str | None:
    """The installed distribution's version (None when running from a bare checkout): what
    `--version`, the PVE client's User-Agent and `pve_balancer_build_info` report."""
    try:
        return metadata.version("pve-balancer")
    except metadata.PackageNotFoundError:
        return None
