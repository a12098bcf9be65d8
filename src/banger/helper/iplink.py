"""Reading and changing network links with iproute2, for the helper's verbs.

Names reaching this module have already been validated; it only turns them
into ``ip`` argv lists and parses ``ip -j`` output.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from banger.helper import run as proc
from banger.helper.errors import HostError

IP = "ip"


@dataclass(frozen=True)
class Link:
    name: str
    # "bridge", "tap", "tun", "veth", ... ("" for a plain device such as eth0).
    kind: str
    master: str | None
    up: bool
    # For tun/tap devices, the user iproute2 reports (a name, or a number without one).
    owner: str | None
    ipv4: tuple[ipaddress.IPv4Interface, ...]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "master": self.master,
            "up": self.up,
            "addresses": [str(a) for a in self.ipv4],
        }


def _parse(entry: dict[str, Any]) -> Link:
    info = entry.get("linkinfo") or {}
    kind = str(info.get("info_kind") or "")
    data = info.get("info_data") or {}
    owner = None
    if kind == "tun":
        kind = str(data.get("type") or "tun")
        owner = str(data["user"]) if "user" in data else None
    addrs = tuple(
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in entry.get("addr_info") or []
        if a.get("family") == "inet" and "local" in a
    )
    return Link(
        name=str(entry["ifname"]),
        kind=kind,
        master=entry.get("master"),
        up="UP" in (entry.get("flags") or []),
        owner=owner,
        ipv4=addrs,
    )


def _show(*dev: str) -> list[Link]:
    result = proc.run([IP, "-j", "-d", "addr", "show", *dev], check=False, timeout=30)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        if dev and "does not exist" in stderr:
            return []
        raise HostError(f"`ip addr show` failed: {stderr.strip()}", hint="is iproute2 installed?")
    try:
        entries = json.loads(result.stdout or b"[]")
    except json.JSONDecodeError as exc:
        raise HostError(f"`ip -j` printed something that is not JSON: {exc}") from exc
    # Entries without an ifname are addresses of links that vanished mid-dump.
    return [_parse(e) for e in entries if isinstance(e, dict) and "ifname" in e]


def get(name: str) -> Link | None:
    links = _show("dev", name)
    return links[0] if links else None


def all_links() -> list[Link]:
    return _show()


def add_bridge(name: str) -> None:
    proc.run([IP, "link", "add", "name", name, "type", "bridge"], timeout=30)


def add_tap(name: str, uid: int) -> None:
    proc.run([IP, "tuntap", "add", "dev", name, "mode", "tap", "user", str(uid)], timeout=30)


def add_address(name: str, address: ipaddress.IPv4Interface) -> None:
    proc.run([IP, "addr", "add", str(address), "dev", name], timeout=30)


def set_master(name: str, master: str) -> None:
    proc.run([IP, "link", "set", "dev", name, "master", master], timeout=30)


def set_up(name: str) -> None:
    proc.run([IP, "link", "set", "dev", name, "up"], timeout=30)


def delete(name: str) -> bool:
    """Delete a link; False when it was already gone."""
    result = proc.run([IP, "link", "del", "dev", name], check=False, timeout=30)
    if result.returncode == 0:
        return True
    stderr = result.stderr.decode(errors="replace").strip()
    if "Cannot find device" in stderr or "does not exist" in stderr:
        return False
    raise HostError(f"`ip link del dev {name}` failed: {stderr}")


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    dev: str | None
    kind: str


def routes() -> list[Route]:
    """Every IPv4 route in every table, the default routes left out.

    A range can be in use without any link holding an address in it (a VPN,
    a static route to another LAN, a blackhole): the routes say where its
    traffic goes today, so a new bridge must not overlap them.
    """
    result = proc.run([IP, "-j", "-4", "route", "show", "table", "all"], check=False, timeout=30)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise HostError(f"`ip route show` failed: {stderr}", hint="is iproute2 installed?")
    try:
        entries = json.loads(result.stdout or b"[]")
    except json.JSONDecodeError as exc:
        raise HostError(f"`ip -j route` printed something that is not JSON: {exc}") from exc
    found = []
    for entry in entries if isinstance(entries, list) else []:
        dst = entry.get("dst") if isinstance(entry, dict) else None
        if not isinstance(dst, str) or dst == "default":
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        found.append(Route(net, entry.get("dev"), str(entry.get("type") or "unicast")))
    return found
