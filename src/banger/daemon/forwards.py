"""Published ports and automatic forwarding: which host address goes to which VM.

Published forwards (``-p``, ``vm port add``) are recorded in the store and
live as long as their VM: bangerd listens on them from create to delete,
whether the VM runs or not, so the port stays the VM's. A daemon restart
opens them again (``restore``). Automatic ones (``--forward-ports auto``)
are not recorded: every second the poller asks each running VM's guest
agent what listens, opens a forward for each new TCP listener on the same
port of 127.0.0.1 (a free high port for ports below 1024) and closes the
forwards of listeners that went away.

A connection takes one of two paths, shown as a forward's ``via``: straight
to the VM's address on the bridge ("direct", the fast one), or through the
guest agent's ``connect`` ("agent"), which reaches servers bound to the
guest's loopback. Automatic forwards know the listener's address and pick
the path once; a published forward dials directly and, when the guest
refuses there, tries the guest's loopback through the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from banger.api.models import ForwardSource, PortForward, Vm, VmState
from banger.errors import BangerError, Conflict
from banger.guest.channel import AgentError
from banger.net.forward import Dial, Forwarder, ForwardKey, Upstream, bind, tcp_connect
from banger.net.portspec import LOOPBACK
from banger.store import Store
from banger.store.repo import PortPublished

log = logging.getLogger("banger.daemon")

POLL_INTERVAL = 1.0
POLL_TIMEOUT = 3.0
# The guest's own SSH server is reached at NAME.vm; a second way in helps nobody.
_NOT_AUTO = frozenset({22})
_ANY = frozenset({"0.0.0.0", "::", "*", ""})  # noqa: S104 (parsed, never bound)


class GuestListeners(Protocol):
    """What listens in a guest, as (address, port) of each listening TCP socket."""

    async def listeners(self, vm: Vm) -> list[tuple[str, int]]: ...


class GuestDialer(Protocol):
    """Connections made inside a guest, to its loopback or its own addresses."""

    async def dial(self, vm: Vm, port: int, host: str) -> Upstream: ...


class Via(StrEnum):
    DIRECT = "direct"
    AGENT = "agent"


# Where a published forward looks when the guest refuses it on the bridge.
_LOOPBACKS = ("127.0.0.1", "::1")


def _key(forward: PortForward) -> ForwardKey:
    return ForwardKey(forward.host_ip, forward.host_port)


class ForwardService:
    def __init__(
        self,
        store: Store,
        forwarder: Forwarder,
        listeners: GuestListeners | None = None,
        poll_interval: float = POLL_INTERVAL,
        dialer: GuestDialer | None = None,
    ) -> None:
        self.store = store
        self.forwarder = forwarder
        self.listeners = listeners
        self.dialer = dialer
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        # Why a recorded forward is not open (a port taken while bangerd was down).
        self._errors: dict[ForwardKey, str] = {}
        # vm id -> guest port -> the automatic forward open for it.
        self._auto: dict[str, dict[int, PortForward]] = {}
        # (vm id, guest port) -> the guest address an automatic forward dials ("" direct).
        self._routes: dict[tuple[str, int], str] = {}
        # The path a published forward's last connection took.
        self._via: dict[ForwardKey, str] = {}
        self._told: set[tuple[str, int]] = set()
        self._task: asyncio.Task[None] | None = None

    # published forwards

    def check_free(self, forwards: Iterable[PortForward]) -> None:
        """Fail fast, before anything is created, when a host address is not to be had."""
        for forward in forwards:
            holder = self.store.forward_holder(forward.host_port)
            if holder is not None and _overlaps(holder[1].host_ip, forward.host_ip):
                raise PortPublished(holder[1], holder[0])
            self._check_auto(forward)
            bind(forward.host_ip, forward.host_port).close()

    def open_all(self, vm: Vm) -> None:
        """Listen on every recorded forward of a new VM; on failure none stays open."""
        opened: list[PortForward] = []
        try:
            for forward in vm.forwards:
                self._open(vm, forward)
                opened.append(forward)
        except BaseException:
            for forward in opened:
                self.forwarder.close(_key(forward))
            raise

    def publish(self, vm: Vm, forward: PortForward) -> PortForward:
        """Record and open one forward of an existing VM (`vm port add`)."""
        self.check_free([forward])
        self.store.add_forward(vm.id, forward)
        try:
            self._open(vm, forward)
        except BaseException:
            self.store.remove_forward(vm.id, forward)
            raise
        log.info("%s: published %s -> guest port %d", vm.name, _key(forward), forward.guest_port)
        return forward

    def unpublish(self, vm: Vm, forward: PortForward) -> None:
        self.store.remove_forward(vm.id, forward)
        self.forwarder.close(_key(forward))
        with self._lock:
            self._errors.pop(_key(forward), None)
            self._via.pop(_key(forward), None)
        log.info("%s: withdrew %s", vm.name, _key(forward))

    def close_vm(self, vm: Vm) -> None:
        """At delete: every forward of the VM, recorded or automatic, closed."""
        for forward in vm.forwards:
            self.forwarder.close(_key(forward))
        with self._lock:
            auto = self._auto.pop(vm.id, {})
            for forward in vm.forwards:
                self._errors.pop(_key(forward), None)
                self._via.pop(_key(forward), None)
            for port in auto:
                self._routes.pop((vm.id, port), None)
        for forward in auto.values():
            self.forwarder.close(_key(forward))

    def restore(self, vms: Iterable[Vm]) -> list[str]:
        """At daemon start: listen again on every recorded forward; a line per failure."""
        problems = []
        for vm in vms:
            for forward in vm.forwards:
                try:
                    self._open(vm, forward)
                except BangerError as exc:
                    with self._lock:
                        self._errors[_key(forward)] = exc.message
                    problems.append(f"{vm.name}: {exc.message}")
        return problems

    def _open(self, vm: Vm, forward: PortForward) -> None:
        self.forwarder.open(_key(forward), self._published_dial(vm, forward))

    def _published_dial(self, vm: Vm, forward: PortForward) -> Dial:
        key, address, port = _key(forward), vm.ip, forward.guest_port

        async def dial() -> Upstream:
            try:
                upstream: Upstream = await tcp_connect(address, port)
                via = Via.DIRECT
            except ConnectionRefusedError:
                if self.dialer is None:
                    raise
                upstream = await self._dial_loopback(vm, port)
                via = Via.AGENT
            with self._lock:
                self._via[key] = via
            return upstream

        return dial

    async def _dial_loopback(self, vm: Vm, port: int) -> Upstream:
        assert self.dialer is not None
        for host in _LOOPBACKS[:-1]:
            try:
                return await self.dialer.dial(vm, port, host)
            except AgentError as exc:
                if exc.errno != "ECONNREFUSED":
                    raise
        return await self.dialer.dial(vm, port, _LOOPBACKS[-1])

    def _auto_dial(self, vm: Vm, port: int, route: str) -> Dial:
        address, dialer = vm.ip, self.dialer

        async def dial() -> Upstream:
            if not route:
                return await tcp_connect(address, port)
            assert dialer is not None
            return await dialer.dial(vm, port, route)

        return dial

    def view(self, vm: Vm) -> list[PortForward]:
        """The VM's forwards as they stand: recorded ones with their state, then automatic."""
        with self._lock:
            shown = [
                f.model_copy(
                    update={
                        "error": self._errors.get(_key(f), ""),
                        "via": self._via.get(_key(f), ""),
                    }
                )
                for f in vm.forwards
            ]
            auto = sorted(self._auto.get(vm.id, {}).values(), key=lambda f: f.guest_port)
        return shown + auto

    def _check_auto(self, forward: PortForward) -> None:
        with self._lock:
            for vm_id, ports in self._auto.items():
                for auto in ports.values():
                    if auto.host_port == forward.host_port:
                        vm = self.store.get_vm(vm_id)
                        raise Conflict(
                            f"host port {_key(auto)} is forwarded automatically to VM"
                            f" {vm.name!r} (its guest port {auto.guest_port})",
                            hint="pick another host port; `banger vm port list"
                            f" {vm.name}` shows its forwards",
                        )

    # automatic forwarding

    def start(self) -> None:
        """Start the poller on the event loop, when there is a guest channel to ask."""
        if self.listeners is None:
            log.info("automatic port forwarding is off: no guest agent channel is wired")
            return
        self._task = self.forwarder.loop.create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("automatic port forwarding: poll failed")
            await asyncio.sleep(self.poll_interval)

    async def poll_once(self) -> None:
        vms = await asyncio.to_thread(self.store.list_vms)
        watched = [v for v in vms if v.forward_ports == "auto" and v.state == VmState.RUNNING]
        gone = set(self._auto) - {v.id for v in watched}
        for vm_id in gone:
            self._withdraw_all(vm_id)
        await asyncio.gather(*(self._sync(vm) for vm in watched))

    async def _sync(self, vm: Vm) -> None:
        assert self.listeners is not None
        try:
            found = await asyncio.wait_for(self.listeners.listeners(vm), POLL_TIMEOUT)
        except Exception as exc:  # a guest still booting, or busy: try again next round
            log.debug("%s: listeners not read: %s", vm.name, exc)
            return
        published = {f.guest_port for f in vm.forwards}
        wanted = {
            port: route
            for port, route in _routes(found, vm, agent=self.dialer is not None).items()
            if port not in _NOT_AUTO and port not in published
        }
        with self._lock:
            current = dict(self._auto.get(vm.id, {}))
            moved = {
                p for p in current if p in wanted and self._routes.get((vm.id, p)) != wanted[p]
            }
        for port in sorted((set(current) - set(wanted)) | moved):
            self._withdraw(vm, current[port])
        for port in sorted((set(wanted) - set(current)) | moved):
            self._add_auto(vm, port, wanted[port])

    def _add_auto(self, vm: Vm, guest_port: int, route: str) -> None:
        host_port = guest_port if guest_port >= 1024 else 0
        if self.store.forward_holder(guest_port) is not None and host_port:
            self._tell_once(vm, guest_port, "is published by a VM")
            return
        try:
            bound = self.forwarder.open(
                ForwardKey(LOOPBACK, host_port), self._auto_dial(vm, guest_port, route)
            )
        except BangerError as exc:
            self._tell_once(vm, guest_port, exc.message)
            return
        forward = PortForward(
            host_ip=LOOPBACK,
            host_port=bound.host_port,
            guest_port=guest_port,
            source=ForwardSource.AUTO,
            via=Via.AGENT if route else Via.DIRECT,
        )
        with self._lock:
            self._auto.setdefault(vm.id, {})[guest_port] = forward
            self._routes[(vm.id, guest_port)] = route
            self._told.discard((vm.id, guest_port))
        why = " (a privileged port: a free high one instead)" if guest_port < 1024 else ""
        if route:
            why += f" through the guest agent (it listens on {route} only)"
        log.info("%s: guest listens on %d; forwarding %s%s", vm.name, guest_port, bound, why)

    def _withdraw(self, vm: Vm, forward: PortForward) -> None:
        with self._lock:
            self._auto.get(vm.id, {}).pop(forward.guest_port, None)
            self._routes.pop((vm.id, forward.guest_port), None)
        self.forwarder.close(_key(forward))
        log.info("%s: guest stopped listening on %d; withdrew %s", vm.name, forward.guest_port,
                 _key(forward))  # fmt: skip

    def _withdraw_all(self, vm_id: str) -> None:
        with self._lock:
            ports = self._auto.pop(vm_id, {})
            for port in ports:
                self._routes.pop((vm_id, port), None)
        for forward in ports.values():
            self.forwarder.close(_key(forward))
            log.info("VM %s is not running; withdrew %s", vm_id, _key(forward))

    def _tell_once(self, vm: Vm, guest_port: int, why: str) -> None:
        with self._lock:
            if (vm.id, guest_port) in self._told:
                return
            self._told.add((vm.id, guest_port))
        log.info("%s: guest port %d not forwarded: %s", vm.name, guest_port, why)


def _overlaps(a: str, b: str) -> bool:
    """Two host addresses on one port conflict when equal or when either is a wildcard."""
    return a == b or a in _ANY or b in _ANY


def _routes(found: Iterable[tuple[str, int]], vm: Vm, *, agent: bool) -> dict[int, str]:
    """Guest port -> how to reach its listener: "" straight at the VM's address, else
    the guest address the agent dials. A port that listens on every address, or on
    the VM's own, goes direct; one bound elsewhere (its loopback) only with an agent."""
    routes: dict[int, str] = {}
    for address, port in found:
        if address in _ANY or address == vm.ip:
            routes[port] = ""
        elif agent and port not in routes:
            routes[port] = address
        elif agent and routes[port] and address.startswith("127."):
            routes[port] = address  # IPv4 loopback before ::1: the cheaper of the two
    return routes
