"""banger's bridge while VMs use it: isolation, the .vm DNS responder, resolver hookup.

Brought up before the first VM boots and torn down when the last running VM
goes, so a host with no running VM carries none of banger's nftables rules.
The bridge itself stays: it holds nothing but an address.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from banger.api.models import VmState
from banger.config import Settings
from banger.helper.client import HelperClient
from banger.net import plan as netplan
from banger.net.dns import DnsResponder
from banger.store import Store

log = logging.getLogger("banger.net")
T = TypeVar("T")

# States in which a VM needs the bridge's rules (it runs, or is about to).
_USING = (VmState.CREATING, VmState.STARTING, VmState.RUNNING, VmState.STOPPING)


class BridgeNetwork:
    def __init__(self, settings: Settings, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.store = store
        self._loop = loop
        self._lock = threading.Lock()
        self._dns: DnsResponder | None = None
        # Whether the host's resolver sends NAME.vm here (systemd-resolved hooked up),
        # so what banger prints for people to type says a name only where one works.
        self.names_resolve = False

    @property
    def gateway(self) -> str:
        return str(netplan.gateway(self.settings.network))

    def lookup(self, name: str) -> str | None:
        """The address of VM ``name`` for the DNS responder (any VM that exists)."""
        for vm in self.store.list_vms():
            if vm.name == name:
                return vm.ip
        return None

    def ensure(self, helper: HelperClient) -> None:
        """The bridge with its address, rules and DNS; idempotent, called before each boot."""
        bridge = self.settings.bridge
        with self._lock:
            helper.ensure_bridge(bridge, netplan.bridge_address(self.settings.network))
            helper.net_isolate(bridge)
            helper.dns_redirect(bridge, self.gateway, self.settings.dns_port)
            if self._dns is None:
                resolver = helper.resolver_link(bridge, self.gateway)
                self.names_resolve = bool(resolver.get("linked"))
                if not resolver.get("linked"):
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

    def release_if_idle(self, helper: HelperClient, leaving: str) -> None:
        """Tear the rules down when no VM but ``leaving`` (an id) uses the bridge."""
        with self._lock:
            users = [vm for vm in self.store.list_vms() if vm.state in _USING and vm.id != leaving]
            if users:
                return
            if helper.net_teardown(self.settings.bridge):
                log.info("no VM runs: removed banger's nftables table")
            helper.resolver_unlink(self.settings.bridge)
            self.names_resolve = False
            if self._dns is not None:
                dns, self._dns = self._dns, None
                self._call(dns.stop())

    async def _start_dns(self) -> DnsResponder:
        dns = DnsResponder()
        await dns.start(self.gateway, self.settings.dns_port, self.lookup)
        return dns

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the daemon's loop from a worker thread; wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def close(self) -> None:
        if self._dns is not None:
            await self._dns.stop()
            self._dns = None
