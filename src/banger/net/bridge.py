"""banger's bridge while VMs use it: isolation, DNS for VMs, resolver hookup.

Brought up before the first VM boots and torn down when the last running VM
goes, so a host with no running VM carries none of banger's nftables rules.
The bridge itself stays while the daemon runs (it holds nothing but an
address) and goes with the daemon when no VM runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from banger.config import Settings
from banger.net import plan as netplan
from banger.net.dns import DnsResponder
from banger.net.helper import NetHelper, VmDirectory

log = logging.getLogger("banger.net")
T = TypeVar("T")


class BridgeNetwork:
    def __init__(
        self,
        settings: Settings,
        helper: NetHelper,
        vms: VmDirectory,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.helper = helper
        self.vms = vms
        self._loop = loop
        self._lock = threading.Lock()
        self._dns: DnsResponder | None = None
        self.resolver_linked = False
        # The bridge, its rules and DNS are in place and stay until release_if_idle
        # takes them down (under the same lock): a VM booting beside running ones
        # need not ask the helper for them again, one after another.
        self._up = False

    @property
    def gateway(self) -> str:
        return str(netplan.gateway(self.settings.network))

    def lookup(self, name: str) -> str | None:
        """The address of VM ``name`` for the DNS responder (any VM that exists)."""
        for vm in self.vms.list_vms():
            if vm.name == name:
                return vm.ip
        return None

    def allowed_out(self, source: str) -> bool:
        """Whether the DNS client at ``source`` may resolve outside names: a VM with NAT."""
        return any(vm.ip == source and vm.nat for vm in self.vms.list_vms())

    def ensure(self, *, check: bool = False) -> None:
        """The bridge with its address, rules and DNS; idempotent, called before each boot.

        Once in place the bridge and rules are not asked for again until torn
        down, unless ``check`` (a daemon starting beside VMs that kept running:
        the host may have lost them meanwhile); DNS is tried again until it runs.
        """
        bridge = self.settings.bridge
        helper = self.helper
        with self._lock:
            if check or not self._up:
                helper.ensure_bridge(bridge, netplan.bridge_address(self.settings.network))
                helper.net_isolate(bridge)
                helper.dns_redirect(bridge, self.gateway, self.settings.dns_port)
                self._up = True
            if self._dns is None:
                resolver = helper.resolver_link(bridge, self.gateway)
                self.resolver_linked = bool(resolver.get("linked"))
                if not self.resolver_linked:
                    log.info("NAME.vm from the host: %s", resolver.get("reason", "not linked"))
                try:
                    self._dns = self._call(self._start_dns())
                except OSError as exc:
                    # VMs work without names; say why, and try again at the next boot.
                    log.warning(
                        "cannot answer NAME.vm on %s:%d: %s (another bangerd on this bridge?)",
                        self.gateway,
                        self.settings.dns_port,
                        exc,
                    )
                else:
                    log.info("answering NAME.vm on %s:53", self.gateway)

    def in_use(self, leaving: str = "") -> bool:
        """Whether a VM other than ``leaving`` (an id) runs or is about to."""
        return any(vm.state.holds_network and vm.id != leaving for vm in self.vms.list_vms())

    def release_if_idle(self, leaving: str = "") -> bool:
        """Tear the rules down when no VM but ``leaving`` uses the bridge; True if done."""
        with self._lock:
            if self.in_use(leaving):
                return False
            self._up = False
            if self.helper.net_teardown(self.settings.bridge):
                log.info("no VM runs: removed banger's nftables table")
            self.helper.resolver_unlink(self.settings.bridge)
            self.resolver_linked = False
            if self._dns is not None:
                dns, self._dns = self._dns, None
                self._call(dns.stop())
            return True

    def remove_if_idle(self) -> bool:
        """At daemon stop: the rules and the bridge itself go when no VM needs them."""
        if not self.release_if_idle():
            return False
        if self.helper.delete_bridge(self.settings.bridge):
            log.info("no VM runs: removed bridge %s", self.settings.bridge)
        return True

    async def _start_dns(self) -> DnsResponder:
        dns = DnsResponder(self.settings.dns_upstreams)
        await dns.start(self.gateway, self.settings.dns_port, self.lookup, self.allowed_out)
        return dns

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the daemon's loop from a worker thread; wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def close(self) -> None:
        if self._dns is not None:
            await self._dns.stop()
            self._dns = None
