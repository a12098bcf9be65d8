"""Which address a new VM gets: decided here, recorded by the store.

The decision is pure (the lowest free host address of the range, the
bridge's own and any reserved ones skipped); the store's lease table has the
address as its primary key, so two daemons racing on one store can never
both record the same address: the loser is told ``AddressTaken`` and picks
again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from typing import Protocol

from banger.api.models import Vm
from banger.errors import Conflict, HostError

# A racing daemon would have to win this many times in a row.
_ATTEMPTS = 8


class AddressTaken(Conflict):
    """The address was leased by someone else between the choice and the insert."""


class LeaseBook(Protocol):
    """Where leases are recorded (the store)."""

    def leased_addresses(self) -> set[str]: ...

    def insert_vm(self, vm: Vm) -> Vm:
        """Record the VM and its lease together; AddressTaken when the address is leased."""
        ...


def pick_address(
    network: ipaddress.IPv4Network,
    used: Collection[str],
    reserved: Iterable[ipaddress.IPv4Address] = (),
) -> ipaddress.IPv4Address:
    skip = {network.network_address, network.broadcast_address, *reserved}
    taken = {ipaddress.IPv4Address(ip) for ip in used}
    for ip in network.hosts():
        if ip not in skip and ip not in taken:
            return ip
    raise HostError(
        f"no free address left in {network}",
        hint="delete VMs you no longer need, or configure a larger subnet",
    )


def lease(
    draft: Vm,
    book: LeaseBook,
    network: ipaddress.IPv4Network,
    reserved: Iterable[ipaddress.IPv4Address] = (),
) -> Vm:
    """Record ``draft`` with the lowest free address of ``network``; the recorded VM."""
    reserved = tuple(reserved)
    for _ in range(_ATTEMPTS):
        ip = pick_address(network, book.leased_addresses(), reserved)
        try:
            return book.insert_vm(draft.model_copy(update={"ip": str(ip)}))
        except AddressTaken:
            continue
    raise HostError(
        f"could not lease an address in {network}: others kept taking them",
        hint="is another bangerd using the same store? try again",
    )
