"""Pointing systemd-resolved at banger's DNS responder for ``*.vm``, where it runs.

``resolvectl dns BRIDGE ADDRESS`` plus the routing-only domain ``~vm`` sends
the host's ``NAME.vm`` lookups to the bridge address (port 53, which banger's
nftables table redirects to the daemon's unprivileged port), and nothing
else. Without systemd-resolved the verbs are no-ops that say so; the host can
still use ``ssh NAME.vm`` through banger's ssh-config.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banger.helper import run as proc

log = logging.getLogger("banger.helper")

RESOLVE_DIR = Path("/run/systemd/resolve")
DOMAIN = "~vm"

Which = Callable[[str], str | None]


def resolvectl(resolve_dir: Path = RESOLVE_DIR, which: Which = proc.which) -> str | None:
    """The resolvectl to use, or None when systemd-resolved is not running here."""
    if not resolve_dir.is_dir():
        return None
    return which("resolvectl")


def link_argvs(tool: str, bridge: str, address: ipaddress.IPv4Address) -> list[list[str]]:
    return [
        [tool, "dns", bridge, str(address)],
        [tool, "domain", bridge, DOMAIN],
        # Only .vm goes to the bridge, even when it is the only link with a server.
        [tool, "default-route", bridge, "false"],
    ]


def unlink_argvs(tool: str, bridge: str) -> list[list[str]]:
    return [[tool, "revert", bridge]]


def _absent(bridge: str) -> dict[str, Any]:
    return {
        "bridge": bridge,
        "linked": False,
        "reason": f"systemd-resolved is not running ({RESOLVE_DIR} or resolvectl missing)",
    }


def link(
    bridge: str,
    address: ipaddress.IPv4Address,
    resolve_dir: Path = RESOLVE_DIR,
    which: Which = proc.which,
) -> dict[str, Any]:
    tool = resolvectl(resolve_dir, which)
    if tool is None:
        return _absent(bridge)
    for argv in link_argvs(tool, bridge, address):
        proc.run(argv, timeout=30)
    return {"bridge": bridge, "linked": True, "dns": str(address), "domain": DOMAIN}


def unlink(
    bridge: str, resolve_dir: Path = RESOLVE_DIR, which: Which = proc.which
) -> dict[str, Any]:
    tool = resolvectl(resolve_dir, which)
    if tool is None:
        return _absent(bridge)
    for argv in unlink_argvs(tool, bridge):
        # The link may already be gone with its bridge; nothing left to revert.
        proc.run(argv, check=False, timeout=30)
    return {"bridge": bridge, "linked": False, "reverted": True}
