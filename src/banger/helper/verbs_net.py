"""The helper's network policy verbs: NAT, isolation and the DNS redirect (nftables), and
the host resolver's .vm domain. Each acts only on a bridge and a table its caller owns."""

from __future__ import annotations

import ipaddress
from typing import Any

from banger.helper import iplink, nft, resolved
from banger.helper.errors import Conflict, NotFound, UserError
from banger.helper.validate import (
    Policy,
    ipv4_address,
    ipv4_network,
    link_name,
    unprivileged_port,
)
from banger.helper.verb import LINK, TABLE, Verb, mine, table


def _my_bridge(policy: Policy, bridge: str) -> iplink.Link:
    """The caller's bridge, which must exist: rules are only written for it."""
    link = iplink.get(bridge)
    if link is None or link.kind != "bridge":
        raise NotFound(
            f"bridge {bridge} does not exist",
            hint="create it first with the bridge_ensure verb (bangerd does this itself)",
        )
    mine(policy, LINK, bridge)
    return link


def _my_table(policy: Policy, bridge: str) -> None:
    """The bridge's table is the caller's to change: made for them, or not made yet."""
    if policy.ledger.owner(TABLE, bridge) is not None or nft.read_table(bridge) is not None:
        mine(policy, TABLE, bridge)
    else:
        policy.ledger.record(TABLE, bridge, policy.caller)


def _nat_enable(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    bridge: str = args["bridge"]
    subnet: ipaddress.IPv4Network = args["subnet"]
    source: ipaddress.IPv4Address = args["source"]
    link = _my_bridge(policy, bridge)
    own = [a for a in link.ipv4 if a.network == subnet]
    if not own:
        has = ", ".join(str(a) for a in link.ipv4) or "no address"
        raise Conflict(
            f"{subnet} is not the network of bridge {bridge} (it has {has})",
            hint="pass the bridge's own subnet: NAT is only for addresses on banger's bridge",
        )
    if source in [a.ip for a in own]:
        raise UserError(f"source {source} is the bridge's own address, not a VM's")
    _my_table(policy, bridge)
    return nft.nat_enable(bridge, subnet, source)


def _nat_disable(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    mine = policy.ledger.names(TABLE, policy.caller)
    return nft.nat_disable(args["source"], only=mine)


def _nat_list(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    mine = set(policy.ledger.names(TABLE, policy.caller))
    return {"nat": [e for e in nft.nat_list() if e["bridge"] in mine]}


def _net_isolate(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    _my_bridge(policy, args["bridge"])
    _my_table(policy, args["bridge"])
    return nft.isolate(args["bridge"])


def _bridge_owns(bridge: str, address: ipaddress.IPv4Address) -> None:
    # Redirecting DNS to an address that is not the bridge's would hand the
    # port to whoever holds that address.
    link = iplink.get(bridge)
    if link is None or link.kind != "bridge":
        raise NotFound(
            f"bridge {bridge} does not exist",
            hint="create it first with the bridge_ensure verb (bangerd does this itself)",
        )
    if address not in [a.ip for a in link.ipv4]:
        owned = ", ".join(str(a.ip) for a in link.ipv4) or "no address"
        raise Conflict(
            f"{address} is not an address of bridge {bridge} (it has {owned})",
            hint="pass the bridge's own address",
        )


def _dns_redirect(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    _bridge_owns(args["bridge"], args["address"])
    mine(policy, LINK, args["bridge"])
    _my_table(policy, args["bridge"])
    return nft.dns_redirect(args["bridge"], args["address"], args["port"])


def _net_teardown(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    bridge: str = args["bridge"]
    if policy.ledger.owner(TABLE, bridge) is None and nft.read_table(bridge) is None:
        return {"bridge": bridge, "deleted": False, "ip_forward_restored": False}
    mine(policy, TABLE, bridge)
    result = nft.teardown(bridge)
    policy.ledger.forget(TABLE, bridge)
    return result


def _resolver_link(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    _bridge_owns(args["bridge"], args["address"])
    mine(policy, LINK, args["bridge"])
    return resolved.link(args["bridge"], args["address"])


def _resolver_unlink(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    if policy.ledger.owner(LINK, args["bridge"]) is not None:
        mine(policy, LINK, args["bridge"])
    return resolved.unlink(args["bridge"])


NET_VERBS = table(
    Verb(
        "nat_enable",
        "masquerade one VM address (source, inside subnet) out of the host",
        {"bridge": link_name, "subnet": ipv4_network, "source": ipv4_address},
        _nat_enable,
    ),
    Verb(
        "nat_disable",
        "stop NAT for one VM address; drop banger's table when nothing needs it",
        {"source": ipv4_address},
        _nat_disable,
    ),
    Verb("nat_list", "VM addresses with NAT, per bridge", {}, _nat_list, exclusive=False),
    Verb(
        "net_isolate",
        "drop traffic from the bridge to other interfaces unless its source has NAT",
        {"bridge": link_name},
        _net_isolate,
    ),
    Verb(
        "dns_redirect",
        "send port 53 of the bridge address to the daemon's unprivileged port",
        {"bridge": link_name, "address": ipv4_address, "port": unprivileged_port},
        _dns_redirect,
    ),
    Verb(
        "net_teardown",
        "delete the bridge's nftables table (restores ip_forward if banger set it)",
        {"bridge": link_name},
        _net_teardown,
    ),
    Verb(
        "resolver_link",
        "point systemd-resolved's .vm domain at the bridge address, where it runs",
        {"bridge": link_name, "address": ipv4_address},
        _resolver_link,
    ),
    Verb(
        "resolver_unlink",
        "undo resolver_link for the bridge",
        {"bridge": link_name},
        _resolver_unlink,
    ),
)
