"""banger's nftables rules: NAT, isolation and the DNS redirect, one table per bridge.

Each banger bridge gets its own table, ``inet banger_<bridge>`` ('-' in the
bridge name becomes '_', which bridge names never contain), so two banger
instances on one host never touch each other's rules, nor anyone else's::

    set nat_sources            VM addresses allowed out (masqueraded)
    chain forward   (filter, hook forward, priority 0, policy accept)
        oifname BR ct state established,related accept
        iifname BR ip saddr @nat_sources oifname != BR accept
        iifname BR oifname != BR jump isolate
    chain isolate              empty, or one `drop` once net_isolate ran
    chain postrouting (nat, srcnat)   iifname BR ip saddr @nat_sources oifname != BR masquerade
    chain prerouting  (nat, dstnat)   port 53 to the bridge address -> daemon's port
    chain output      (nat, -100)     the same for the host's own queries
    chain ipfwd_was_0          present only if banger turned ip_forward on

VM-to-VM traffic is bridged, never forwarded, so none of this affects it.
State lives in the table itself: NAT sources are set elements, "isolated" and
"DNS redirected" are whether those chains hold rules, and the previous
ip_forward value is the presence of the empty ``ipfwd_was_0`` chain. Nothing
to keep in sync on disk, and a reboot clears both the table and ip_forward.

A table is deleted when nothing in it is needed: by ``teardown`` (the last
VM of the bridge is gone), or when the last NAT source leaves a table that
was never isolated nor given a DNS redirect. ip_forward goes back to 0 when
no banger table has NAT sources left and banger was the one to turn it on.

Every script is rendered from already validated values and checked again
here, so nothing a caller sends can reach ``nft`` unchecked.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger.helper import run as proc
from banger.helper.errors import HostError, UserError
from banger.helper.validate import LINK_NAME

log = logging.getLogger("banger.helper")

NFT = "nft"
FAMILY = "inet"
TABLE_PREFIX = "banger_"
NAT_SET = "nat_sources"
MARKER = "ipfwd_was_0"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class TableState:
    name: str
    sources: frozenset[ipaddress.IPv4Address]
    isolated: bool
    dns: bool
    marker: bool

    @property
    def needed_without_nat(self) -> bool:
        return self.isolated or self.dns


# Pure: names and script text.


def table_name(bridge: str) -> str:
    if not LINK_NAME.fullmatch(bridge):
        raise ValueError(f"not a banger bridge name: {bridge!r}")
    return TABLE_PREFIX + bridge.replace("-", "_")


def bridge_of(table: str) -> str | None:
    """The bridge a banger table belongs to; None for tables that are not banger's."""
    if not table.startswith(TABLE_PREFIX):
        return None
    bridge = table[len(TABLE_PREFIX) :].replace("_", "-")
    return bridge if LINK_NAME.fullmatch(bridge) else None


def _port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"not a port: {port!r}")
    return port


def skeleton(bridge: str) -> list[str]:
    """Commands that create the table if needed and (re)write its fixed rules.

    ``add`` of an existing table, set or chain is a no-op, and the fixed
    chains are flushed and refilled in the same transaction, so running this
    any number of times leaves one copy of each rule and keeps set elements.
    """
    t = f"{FAMILY} {table_name(bridge)}"
    br = f'"{bridge}"'
    nat = "type nat hook"
    return [
        f"add table {t}",
        f"add set {t} {NAT_SET} {{ type ipv4_addr; }}",
        f"add chain {t} isolate",
        f"add chain {t} forward {{ type filter hook forward priority 0; policy accept; }}",
        f"flush chain {t} forward",
        f"add rule {t} forward oifname {br} ct state established,related accept",
        f"add rule {t} forward iifname {br} ip saddr @{NAT_SET} oifname != {br} accept",
        f"add rule {t} forward iifname {br} oifname != {br} jump isolate",
        f"add chain {t} postrouting {{ {nat} postrouting priority srcnat; policy accept; }}",
        f"flush chain {t} postrouting",
        f"add rule {t} postrouting iifname {br} ip saddr @{NAT_SET} oifname != {br} masquerade",
        f"add chain {t} prerouting {{ {nat} prerouting priority dstnat; policy accept; }}",
        f"add chain {t} output {{ {nat} output priority -100; policy accept; }}",
    ]


def element_lines(bridge: str, op: str, sources: Iterable[ipaddress.IPv4Address]) -> list[str]:
    if op not in ("add", "delete"):
        raise ValueError(f"not an element operation: {op!r}")
    addrs = [str(ipaddress.IPv4Address(s)) for s in sources]
    if not addrs:
        return []
    return [f"{op} element {FAMILY} {table_name(bridge)} {NAT_SET} {{ {', '.join(addrs)} }}"]


def isolate_lines(bridge: str) -> list[str]:
    t = f"{FAMILY} {table_name(bridge)}"
    return [f"flush chain {t} isolate", f"add rule {t} isolate drop"]


def dns_lines(bridge: str, address: ipaddress.IPv4Address, port: int) -> list[str]:
    t = f"{FAMILY} {table_name(bridge)}"
    addr = str(ipaddress.IPv4Address(address))
    match = f"ip daddr {addr} meta l4proto {{ tcp, udp }} th dport 53"
    target = f"dnat ip to {addr}:{_port(port)}"
    return [
        f"flush chain {t} prerouting",
        f'add rule {t} prerouting iifname "{bridge}" {match} {target}',
        f"flush chain {t} output",
        f"add rule {t} output {match} {target}",
    ]


def marker_lines(bridge: str, present: bool) -> list[str]:
    t = f"{FAMILY} {table_name(bridge)}"
    return [f"add chain {t} {MARKER}" if present else f"delete chain {t} {MARKER}"]


def delete_table_lines(bridge: str) -> list[str]:
    return [f"delete table {FAMILY} {table_name(bridge)}"]


def parse_table(name: str, document: dict[str, Any]) -> TableState:
    """A table's state from ``nft -j list table`` output."""
    sources: set[ipaddress.IPv4Address] = set()
    chains: set[str] = set()
    rules: dict[str, int] = {}
    for entry in document.get("nftables") or []:
        if not isinstance(entry, dict):
            continue
        if "set" in entry and entry["set"].get("name") == NAT_SET:
            for elem in entry["set"].get("elem") or []:
                # Plain addresses come as strings; anything else is not ours.
                if isinstance(elem, str):
                    sources.add(ipaddress.IPv4Address(elem))
        elif "chain" in entry:
            chains.add(str(entry["chain"].get("name")))
        elif "rule" in entry:
            chain = str(entry["rule"].get("chain"))
            rules[chain] = rules.get(chain, 0) + 1
    return TableState(
        name=name,
        sources=frozenset(sources),
        isolated=rules.get("isolate", 0) > 0,
        dns=rules.get("prerouting", 0) > 0,
        marker=MARKER in chains,
    )


# Host side: nft and /proc.


def _nft_json(*args: str) -> dict[str, Any] | None:
    result = proc.run([NFT, "-j", *args], check=False, timeout=30)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        if "No such file or directory" in stderr:
            return None
        raise HostError(
            f"`nft -j {' '.join(args)}` failed: {stderr}", hint="is nftables installed?"
        )
    try:
        data = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise HostError(f"`nft -j` printed something that is not JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def read_table(bridge: str) -> TableState | None:
    name = table_name(bridge)
    document = _nft_json("list", "table", FAMILY, name)
    return None if document is None else parse_table(name, document)


def banger_bridges() -> list[str]:
    """Bridges that have a banger table, from ``nft list tables``."""
    document = _nft_json("list", "tables") or {}
    found = []
    for entry in document.get("nftables") or []:
        table = entry.get("table") if isinstance(entry, dict) else None
        if isinstance(table, dict) and table.get("family") == FAMILY:
            bridge = bridge_of(str(table.get("name")))
            if bridge is not None:
                found.append(bridge)
    return sorted(found)


def apply(lines: list[str]) -> None:
    """Run commands as one nft transaction: all of them happen, or none."""
    if not lines:
        return
    script = "\n".join(lines) + "\n"
    log.debug("nft -f -:\n%s", script)
    proc.run([NFT, "-f", "-"], input=script.encode(), timeout=30)


def read_ip_forward() -> int:
    try:
        return int(IP_FORWARD.read_text().strip() or "0")
    except (OSError, ValueError) as exc:
        raise HostError(f"cannot read {IP_FORWARD}: {exc}") from exc


def write_ip_forward(value: int) -> None:
    try:
        IP_FORWARD.write_text(f"{value}\n")
    except OSError as exc:
        raise HostError(f"cannot write {IP_FORWARD}: {exc}") from exc
    log.info("net.ipv4.ip_forward = %d", value)


# Operations behind the verbs.


def nat_enable(
    bridge: str, subnet: ipaddress.IPv4Network, source: ipaddress.IPv4Address
) -> dict[str, Any]:
    if source not in subnet or source in (subnet.network_address, subnet.broadcast_address):
        raise UserError(
            f"source {source} is not a host address of {subnet}",
            hint="pass the VM's leased address and banger's subnet",
        )
    turned_on = read_ip_forward() == 0
    lines = skeleton(bridge) + element_lines(bridge, "add", [source])
    if turned_on:
        lines += marker_lines(bridge, True)
    apply(lines)
    if turned_on:
        write_ip_forward(1)
    return {"bridge": bridge, "source": str(source), "ip_forward_enabled": turned_on}


def _settle_forward() -> bool:
    """Put ip_forward back to 0 if banger turned it on and no NAT source remains."""
    states = [s for s in (read_table(b) for b in banger_bridges()) if s is not None]
    if any(s.sources for s in states):
        return False
    marked = [s for s in states if s.marker]
    if not marked:
        return False
    apply([line for s in marked for line in marker_lines(_bridge(s), False)])
    write_ip_forward(0)
    return True


def _bridge(state: TableState) -> str:
    bridge = bridge_of(state.name)
    assert bridge is not None
    return bridge


def _remove_table(state: TableState) -> bool:
    """Delete a table; True when that put ip_forward back to 0.

    Its ip_forward marker moves to another banger table, if one remains, in
    the same transaction, so the memory of the old value is never lost.
    """
    bridge = _bridge(state)
    others = [b for b in banger_bridges() if b != bridge]
    lines = delete_table_lines(bridge)
    if state.marker and others:
        lines += marker_lines(others[0], True)
    apply(lines)
    if state.marker and not others:
        write_ip_forward(0)
        return True
    return False


def nat_disable(source: ipaddress.IPv4Address, only: Iterable[str] | None = None) -> dict[str, Any]:
    """Remove ``source`` from banger's tables (those of the bridges in ``only``, if given)."""
    allowed = None if only is None else set(only)
    result: dict[str, Any] = {
        "source": str(source),
        "removed": False,
        "table_deleted": False,
        "ip_forward_restored": False,
    }
    for bridge in banger_bridges():
        if allowed is not None and bridge not in allowed:
            continue
        state = read_table(bridge)
        if state is None or source not in state.sources:
            continue
        remaining = state.sources - {source}
        result["removed"] = True
        if not remaining and not state.needed_without_nat:
            result["table_deleted"] = True
            result["ip_forward_restored"] = _remove_table(state)
        else:
            apply(element_lines(bridge, "delete", [source]))
    result["ip_forward_restored"] = _settle_forward() or result["ip_forward_restored"]
    return result


def nat_list() -> list[dict[str, str]]:
    entries = []
    for bridge in banger_bridges():
        state = read_table(bridge)
        for source in sorted(state.sources if state else ()):
            entries.append({"bridge": bridge, "source": str(source)})
    return entries


def isolate(bridge: str) -> dict[str, Any]:
    before = read_table(bridge)
    apply(skeleton(bridge) + isolate_lines(bridge))
    return {"bridge": bridge, "table": table_name(bridge), "created": before is None}


def dns_redirect(bridge: str, address: ipaddress.IPv4Address, port: int) -> dict[str, Any]:
    before = read_table(bridge)
    apply(skeleton(bridge) + dns_lines(bridge, address, port))
    return {
        "bridge": bridge,
        "from": f"{address}:53",
        "to": f"{address}:{port}",
        "created": before is None,
    }


def teardown(bridge: str) -> dict[str, Any]:
    state = read_table(bridge)
    if state is None:
        return {"bridge": bridge, "deleted": False, "ip_forward_restored": False}
    restored = _remove_table(state)
    restored = _settle_forward() or restored
    return {"bridge": bridge, "deleted": True, "ip_forward_restored": restored}
