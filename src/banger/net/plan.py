"""Pure naming and addressing for a VM's network; nothing here touches the host."""

from __future__ import annotations

import hashlib
import ipaddress

from banger.config import NAME_PREFIX

TAP_PREFIX = f"{NAME_PREFIX}t"


def tap_name(vm_id: str) -> str:
    # IFNAMSIZ is 16 with the NUL: "bgt" + 10 hex chars stays well inside it.
    return f"{TAP_PREFIX}{vm_id[:10]}"


def mac_address(vm_id: str) -> str:
    """A stable, locally administered unicast MAC derived from the VM's id."""
    digest = hashlib.sha256(vm_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def gateway(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's own address: the first host of the range."""
    return next(network.hosts())


def bridge_address(network: ipaddress.IPv4Network) -> str:
    return f"{gateway(network)}/{network.prefixlen}"
