"""The helper's fixed table of verbs: what root will do for banger, and nothing else.

A verb (``verb.Verb``) is a name, a strict argument spec (one check per
argument, see ``validate``) and a handler receiving only validated, typed
values. Links (bridge, taps) and the jailed VMM are here, the network
policy in ``verbs_net``; adding a verb is one handler and one ``Verb`` entry
in its module's table. Handlers are idempotent: asking twice for the same state is a no-op
the second time, and deleting something already gone succeeds.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import threading
from typing import Any

from banger import __version__
from banger.helper import iplink, tap, vmm
from banger.helper.errors import Conflict, NotFound, UserError
from banger.helper.validate import (
    Policy,
    allowed_files,
    allowed_path,
    check_args,
    ipv4_interface,
    jail_uid,
    link_name,
    memory_mib,
    owner_uid,
    vcpu_count,
    vm_id,
)
from banger.helper.verb import LINK, VMM, Verb, mine, table
from banger.helper.verbs_net import NET_VERBS

log = logging.getLogger("banger.helper")

# Changing verbs run one at a time: two requests racing to create the same
# tap would otherwise both see it missing.
_CHANGE_LOCK = threading.Lock()


def _ping(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": __version__,
        "uid": os.getuid(),
        "owner_uid": policy.owner_uid,
        "verbs": sorted(VERBS),
    }


def _overlapping(name: str, address: ipaddress.IPv4Interface) -> str | None:
    """What else already uses the bridge's range: a route (any table) or a link address."""
    for route in iplink.routes():
        if route.dev != name and route.dst.overlaps(address.network):
            via = f" via {route.dev}" if route.dev else ""
            return f"a {route.kind} route to {route.dst}{via}"
    for link in iplink.all_links():
        if link.name == name:
            continue
        for other in link.ipv4:
            if other.network.overlaps(address.network):
                return f"{link.name} has {other}"
    return None


def _bridge_ensure(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    name: str = args["name"]
    address: ipaddress.IPv4Interface = args["address"]
    link = iplink.get(name)
    if link is not None and link.kind != "bridge":
        raise Conflict(
            f"{name} exists but is a {link.kind or 'plain'} device, not a bridge",
            hint=f"remove it (`sudo ip link del {name}`) or configure another bridge name",
        )
    if link is not None or policy.ledger.owner(LINK, name) is not None:
        mine(policy, LINK, name)
    if link is not None:
        stale = [str(a) for a in link.ipv4 if a != address]
        if stale:
            raise Conflict(
                f"bridge {name} already has {', '.join(stale)}, not {address}",
                hint=f"banger's subnet changed: stop its VMs, then `sudo ip link del {name}`",
            )
    clash = _overlapping(name, address)
    if clash:
        raise Conflict(
            f"{address.network} overlaps an address already in use: {clash}",
            hint="configure banger with another private subnet (setting `subnet`)",
        )
    changed: list[str] = []
    if link is None:
        # Recorded first: a helper killed between the two must still own what it made.
        policy.ledger.record(LINK, name, policy.caller)
        try:
            iplink.add_bridge(name)
        except Exception:
            policy.ledger.forget(LINK, name)
            raise
        changed.append("created")
    try:
        if link is None or address not in link.ipv4:
            iplink.add_address(name, address)
            changed.append("address")
        if link is None or not link.up:
            iplink.set_up(name)
            changed.append("up")
    except Exception:
        if link is None:
            iplink.delete(name)
            policy.ledger.forget(LINK, name)
        raise
    return {"name": name, "address": str(address), "changed": changed}


def _delete_kind(policy: Policy, name: str, kind: str) -> dict[str, Any]:
    link = iplink.get(name)
    if link is None:
        if policy.ledger.owner(LINK, name) is not None:
            mine(policy, LINK, name)
            policy.ledger.forget(LINK, name)
        return {"name": name, "deleted": False}
    if link.kind != kind:
        raise Conflict(
            f"{name} is a {link.kind or 'plain'} device, not a {kind}; leaving it alone",
            hint=f"remove it yourself with `sudo ip link del {name}` if it is stale",
        )
    mine(policy, LINK, name)
    deleted = iplink.delete(name)
    policy.ledger.forget(LINK, name)
    return {"name": name, "deleted": deleted}


def _bridge_delete(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    return _delete_kind(policy, args["name"], "bridge")


def _owned_by(owner: str | None, uid: int) -> bool:
    if owner is None:
        # A tap without an owner only opens with CAP_NET_ADMIN, which root has.
        return uid == 0
    if owner == str(uid):
        return True
    try:
        return owner == pwd.getpwuid(uid).pw_name
    except KeyError:
        return False


def _tap_create(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    name: str = args["name"]
    bridge: str = args["bridge"]
    uid: int = args["owner_uid"]
    br = iplink.get(bridge)
    if br is None or br.kind != "bridge":
        raise NotFound(
            f"bridge {bridge} does not exist",
            hint="create it first with the bridge_ensure verb (bangerd does this itself)",
        )
    mine(policy, LINK, bridge)
    link = iplink.get(name)
    if link is not None and link.kind != "tap":
        raise Conflict(f"{name} exists but is a {link.kind or 'plain'} device, not a tap")
    if link is not None or policy.ledger.owner(LINK, name) is not None:
        mine(policy, LINK, name)
    if link is not None and not _owned_by(link.owner, uid):
        raise Conflict(
            f"tap {name} exists but belongs to {link.owner}, not uid {uid}",
            hint="delete it with the tap_delete verb, then create it again",
        )
    if link is None:
        policy.ledger.record(LINK, name, policy.caller)  # first, as for the bridge
        try:
            iplink.add_tap(name, uid)
        except Exception:
            policy.ledger.forget(LINK, name)
            raise
    try:
        if link is None or link.master != bridge:
            iplink.set_master(name, bridge)
        if link is None or not link.up:
            iplink.set_up(name)
    except Exception:
        if link is None:
            iplink.delete(name)
            policy.ledger.forget(LINK, name)
        raise
    return {"name": name, "bridge": bridge, "owner_uid": uid, "created": link is None}


def _tap_delete(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    return _delete_kind(policy, args["name"], "tap")


class PassFd(int):
    """A descriptor in a verb's result: sent over the socket (SCM_RIGHTS), then closed."""


def _tap_open(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    name: str = args["name"]
    link = iplink.get(name)
    if link is None or link.kind != "tap":
        raise NotFound(
            f"tap {name} does not exist", hint="create it first with the tap_create verb"
        )
    mine(policy, LINK, name)
    return {"name": name, "fd": PassFd(tap.open_tap(name))}


def _link_list(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    mine = set(policy.ledger.names(LINK, policy.caller))
    links = [link.summary() for link in iplink.all_links() if link.name in mine]
    return {"links": links}


VERBS: dict[str, Verb] = table(
    Verb("ping", "the helper's version and uid", {}, _ping, exclusive=False),
    Verb(
        "bridge_ensure",
        "create banger's bridge with its address, up",
        {"name": link_name, "address": ipv4_interface},
        _bridge_ensure,
    ),
    Verb("bridge_delete", "remove a banger bridge", {"name": link_name}, _bridge_delete),
    Verb(
        "tap_create",
        "create a tap the VMM can open as owner_uid, on a bridge",
        {"name": link_name, "bridge": link_name, "owner_uid": owner_uid},
        _tap_create,
    ),
    Verb("tap_delete", "remove a banger tap", {"name": link_name}, _tap_delete),
    Verb(
        "tap_open",
        "an open descriptor of the caller's tap, passed over the socket (SCM_RIGHTS)",
        {"name": link_name},
        _tap_open,
    ),
    Verb("link_list", "banger's bridges and taps", {}, _link_list, exclusive=False),
)


def dispatch(policy: Policy, verb: object, args: object) -> dict[str, Any]:
    """Validate a request and run its verb; raises BangerError subclasses."""
    if not isinstance(verb, str) or verb not in VERBS:
        shown = verb[:40] if isinstance(verb, str) else verb
        raise UserError(
            f"unknown verb {shown!r}",
            hint="the helper knows: " + ", ".join(sorted(VERBS)),
        )
    entry = VERBS[verb]
    checked = check_args(verb, entry.args, {} if args is None else args, policy, entry.optional)
    if not entry.exclusive:
        return entry.run(policy, checked)
    with _CHANGE_LOCK:
        return entry.run(policy, checked)


# The VMM under its jailer (see helper/vmm.py).

# The jailed VMM: the jail lends the VM's tap to the jail's uid, so the tap
# must be the caller's; the VMM is recorded for the caller like a link.


def _vmm_launch(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    mine(policy, LINK, args["tap"])
    result = vmm.vmm_launch(policy, args)
    policy.ledger.record(VMM, args["id"], policy.caller)
    return result


def _vmm_kill(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    # Unrecorded (a helper restarted without --state-dir): the jail's own
    # record, under the owner's allowed directory, still decides what runs.
    if policy.ledger.owner(VMM, args["id"]) is not None:
        mine(policy, VMM, args["id"])
    result = vmm.vmm_kill(policy, args)
    policy.ledger.forget(VMM, args["id"])
    return result


VERBS.update(NET_VERBS)
VERBS.update(
    table(
        Verb(
            "vmm_launch",
            "start Firecracker for a VM under the jailer (its binaries are the helper's own)",
            {
                "id": vm_id,
                "jail_base": allowed_path,
                "uid": jail_uid,
                "gid": jail_uid,
                "vcpus": vcpu_count,
                "memory_mib": memory_mib,
                "files": allowed_files,
                "writable": allowed_files,
                "tap": link_name,
                "log": allowed_path,
            },
            _vmm_launch,
        ),
        Verb(
            "vmm_kill",
            "kill the jailed Firecracker this helper launched for a VM and remove its jail",
            {"id": vm_id, "jail_base": allowed_path},
            _vmm_kill,
        ),
    )
)
