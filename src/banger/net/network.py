"""VM networking, owned in one place: the bridge, a VM's tap, NAT, leases.

The daemon's services call ``lease`` when a VM is recorded, ``attach``
before its VMM starts (which returns the undo), ``detach`` when it stops,
``set_nat`` when its policy changes, and ``reconcile`` at daemon start.
Nothing else in the daemon calls banger-helper's network verbs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from contextlib import ExitStack
from typing import Protocol

from banger.api.models import Vm
from banger.config import Settings
from banger.errors import BangerError
from banger.net import leases
from banger.net import plan as netplan
from banger.net.bridge import BridgeNetwork
from banger.net.helper import NetHelper

log = logging.getLogger("banger.net")

TUN_DEVICE = "/dev/net/tun"


class Network(Protocol):
    """What the daemon's services need of VM networking (VmNetwork; fakes in tests)."""

    @property
    def bridge_name(self) -> str: ...

    @property
    def names_resolve_on_host(self) -> bool: ...

    def lease(self, draft: Vm, book: leases.LeaseBook) -> Vm: ...

    def attach(self, vm: Vm) -> Callable[[], None]: ...

    def detach(self, vm: Vm) -> None: ...

    def tap_fd(self, vm: Vm) -> int | None: ...

    def set_nat(self, vm: Vm, on: bool) -> None: ...

    def reconcile(self, running: Collection[Vm]) -> list[str]: ...

    def close(self) -> None: ...


class VmNetwork:
    def __init__(
        self, settings: Settings, helper: NetHelper, bridge: BridgeNetwork, owner_uid: int
    ) -> None:
        self.settings = settings
        self.helper = helper
        self.bridge = bridge
        self.owner_uid = owner_uid

    @property
    def bridge_name(self) -> str:
        return self.settings.bridge

    @property
    def names_resolve_on_host(self) -> bool:
        """Whether the host's resolver sends NAME.vm to banger (systemd-resolved linked)."""
        return self.bridge.resolver_linked

    def lease(self, draft: Vm, book: leases.LeaseBook) -> Vm:
        """Record ``draft`` with an address of banger's range (the bridge's own skipped)."""
        network = self.settings.network
        return leases.lease(draft, book, network, reserved=[netplan.gateway(network)])

    def attach(self, vm: Vm) -> Callable[[], None]:
        """The bridge, the VM's tap and its NAT; returns what undoes exactly those."""
        with ExitStack() as undo:
            self.bridge.ensure()
            self.helper.create_tap(vm.tap, self.settings.bridge, self.owner_uid)
            undo.callback(self.helper.delete_tap, vm.tap)
            if vm.nat:
                self._nat_on(vm.ip)
                undo.callback(self.helper.nat_disable, vm.ip)
            made = undo.pop_all()
        return made.close

    def tap_fd(self, vm: Vm) -> int | None:
        """An open descriptor of the VM's tap for its VMM, where bangerd cannot open one.

        Where this user may open /dev/net/tun, the VMM opens the tap by name
        itself (None). Where it is root's alone (0600), the helper opens it
        and passes the descriptor; the caller closes it once the VMM has it.
        """
        if os.access(TUN_DEVICE, os.R_OK | os.W_OK):
            return None
        return self.helper.open_tap(vm.tap)

    def detach(self, vm: Vm) -> None:
        """Free the VM's NAT and tap, and the bridge's rules if no other VM runs; idempotent."""
        if vm.nat:
            self.helper.nat_disable(vm.ip)
        self.helper.delete_tap(vm.tap)
        self.bridge.release_if_idle(leaving=vm.id)

    def set_nat(self, vm: Vm, on: bool) -> None:
        """Change a running VM's NAT now."""
        if on:
            self._nat_on(vm.ip)
        else:
            self.helper.nat_disable(vm.ip)

    def _nat_on(self, ip: str) -> None:
        self.helper.nat_enable(self.settings.bridge, self.settings.subnet, ip)

    def reconcile(self, running: Collection[Vm]) -> list[str]:
        """Remove taps and NAT entries no running VM uses; give running VMs theirs back."""
        try:
            links = self.helper.list_links()
        except BangerError as exc:
            log.warning("reconcile: cannot reach banger-helper (%s); taps not checked", exc.message)
            return []
        live_taps = {vm.tap for vm in running}
        nat_sources = {vm.ip for vm in running if vm.nat}
        fixes = []
        for link in links:
            name = str(link.get("name", ""))
            # Only taps on this daemon's bridge: another banger (another user, another
            # bridge) may run on the same host, and its taps are none of ours.
            ours = link.get("master") == self.settings.bridge
            tap = link.get("kind") == "tap" and name.startswith(netplan.TAP_PREFIX)
            if ours and tap and name not in live_taps:
                self.helper.delete_tap(name)
                fixes.append(f"removed tap {name}, which no running VM uses")
        has_nat = set()
        for entry in self.helper.nat_list():
            source = entry.get("source", "")
            if entry.get("bridge") != self.settings.bridge:
                continue  # another banger's bridge on this host
            has_nat.add(source)
            if source and source not in nat_sources:
                self.helper.nat_disable(source)
                fixes.append(f"removed NAT for {source}, which no running VM uses")
        if live_taps:
            # VMs kept running while no daemon did: give them DNS and their rules back.
            self.bridge.ensure(check=True)
            for source in sorted(nat_sources - has_nat):
                self._nat_on(source)
                fixes.append(f"restored NAT for {source}")
        else:
            self.bridge.release_if_idle()
        return fixes

    def close(self) -> None:
        """At daemon stop: the bridge and its rules go when no VM runs (VMs outlive us)."""
        try:
            self.bridge.remove_if_idle()
        except BangerError as exc:
            log.warning("could not take the bridge down: %s", exc.message)
