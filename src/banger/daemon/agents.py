"""The daemon's links to the guest agents of its running VMs.

One ``AgentLink`` per VM, made on first use and made again when it was lost
(a restarted guest, a daemon that came back, an agent that stopped
answering). A VM whose image records no channel (``Image.channel == 0``: an
older image, a registered disk) has no link; callers then use SSH.

Everything in the daemon that talks to an agent goes through ``link(vm)``
(one connection, its requests multiplexed): QEMU's chardev serves one
client at a time, so a second connection to ``agent.sock`` would wait
behind this one, and under Firecracker a newer vsock session supersedes the
older one in the agent.

The links live on the daemon's event loop. The VM lifecycle and the
inspector run in worker threads, so each call has a ``*_sync`` twin that
hands the coroutine to the loop and waits for it; a twin must never be
called from the loop's own thread.

A link cannot always tell that the agent behind it died: under QEMU the
virtio-serial port's socket stays open when the guest process goes. So
every call has a timeout, and a call that timed out drops its link; the next
call connects afresh, and a dead agent then fails within CONNECT_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from banger.api.models import Vm
from banger.errors import AgentUnavailable, BangerError
from banger.guest.link import AgentError, AgentGone, AgentLink, wait_ready
from banger.store import Store
from banger.vmm import Vmms
from banger.vmm.base import AgentEndpoint

log = logging.getLogger("banger.daemon")

T = TypeVar("T")

# A running VM's agent answers HELLO and short requests (ports, load) in
# milliseconds, a second under emulation and load; one that does not is gone.
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 8.0


def agent_unavailable(vm: Vm, why: object) -> AgentUnavailable:
    return AgentUnavailable(
        f"banger's agent in VM {vm.name!r} does not answer: {why}",
        hint=f"`banger vm ssh {vm.name}` still works; `banger vm restart {vm.name}` starts a"
        " fresh agent",
    )


class Agents:
    def __init__(self, vmm: Vmms, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.vmm = vmm
        self.store = store
        self.loop = loop
        self._links: dict[str, AgentLink] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def has_channel(self, vm: Vm) -> bool:
        """Whether the VM's image carries an agent that speaks banger's channel."""
        image = self.store.find_image(vm.image)
        return image is not None and image.channel > 0

    def endpoint(self, vm: Vm) -> AgentEndpoint:
        return self.vmm.get(vm.vmm).agent_endpoint(Path(vm.dir))

    async def wait_ready(self, vm: Vm, *, timeout: float, alive: Callable[[], bool]) -> float:
        """Wait for a booting VM's agent to answer HELLO; return the seconds it took."""
        start = time.monotonic()
        endpoint = self.endpoint(vm)
        async with self._lock(vm.id):
            await self._drop(vm.id)
            link = await wait_ready(
                str(endpoint.path),
                vsock_port=endpoint.vsock_port,
                timeout=timeout,
                alive=alive,
                vm_name=vm.name,
            )
            self._links[vm.id] = link
        return time.monotonic() - start

    async def link(self, vm: Vm) -> AgentLink | None:
        """The VM's link, connected now if it has none; None for an image without a channel."""
        if not self.has_channel(vm):
            return None
        return (await self._link(vm))[0]

    async def _link(self, vm: Vm) -> tuple[AgentLink, bool]:
        """The VM's link, and whether it was made just now."""
        async with self._lock(vm.id):
            link = self._links.get(vm.id)
            if link is not None and not link.closed:
                return link, False
            endpoint = self.endpoint(vm)
            try:
                link = await AgentLink.connect(
                    str(endpoint.path), vsock_port=endpoint.vsock_port, timeout=CONNECT_TIMEOUT
                )
            except (AgentGone, OSError, TimeoutError) as exc:
                raise agent_unavailable(vm, _why(exc)) from exc
            self._links[vm.id] = link
            return link, True

    async def call(
        self, vm: Vm, op: str, args: dict[str, Any] | None = None, *, timeout: float = CALL_TIMEOUT
    ) -> dict[str, Any]:
        """One request to the VM's agent and its CLOSE result."""
        return await self._with_link(vm, op, timeout, lambda link: link.call(op, args or {}))

    async def output(self, vm: Vm, argv: list[str], *, timeout: float = CALL_TIMEOUT) -> str:
        """A short command's stdout, run through the agent; its failure as a BangerError."""
        done = await self._with_link(vm, argv[0], timeout, lambda link: link.run(argv))
        if done.exited.status != 0:
            raise BangerError(
                f"{' '.join(argv)} in VM {vm.name!r} exited with {done.exited.status}:"
                f" {done.stderr.decode(errors='replace').strip()[-200:]}",
                hint=f"`banger vm ssh {vm.name}` to look inside",
            )
        return done.stdout.decode(errors="replace")

    async def _with_link(
        self, vm: Vm, what: str, timeout: float, work: Callable[[AgentLink], Awaitable[T]]
    ) -> T:
        """``work`` on the VM's link, within ``timeout``; a link lost since its last use is
        made again once (a daemon restart or a guest reboot is no reason to fail)."""
        if not self.has_channel(vm):
            raise agent_unavailable(vm, f"its image {vm.image!r} has no agent channel")
        while True:
            link, fresh = await self._link(vm)
            try:
                return await asyncio.wait_for(work(link), timeout)
            except AgentGone as exc:
                await self._drop(vm.id, link)
                if fresh:
                    raise agent_unavailable(vm, _why(exc)) from exc
            except TimeoutError as exc:
                # The socket may outlive the agent (virtio-serial): start afresh next time.
                await self._drop(vm.id, link)
                raise agent_unavailable(vm, f"no answer to {what} within {timeout:.0f}s") from exc
            except AgentError as exc:
                if exc.errno == "ETIMEDOUT":
                    await self._drop(vm.id, link)
                    raise agent_unavailable(vm, f"no answer to {what} in time") from exc
                raise BangerError(
                    f"{exc.message} (VM {vm.name!r})",
                    hint=exc.hint or f"`banger vm ssh {vm.name}` to look inside",
                ) from exc

    async def forget(self, vm: Vm) -> None:
        """Close the VM's link (it stopped or is being deleted)."""
        await self._drop(vm.id)

    async def close(self) -> None:
        for vm_id in list(self._links):
            await self._drop(vm_id)

    # From worker threads.

    def run_sync(self, work: Awaitable[T], timeout: float) -> T:
        """Run ``work`` on the daemon's loop and wait for it (from a worker thread only)."""

        async def wrapped() -> T:
            return await work

        future = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        try:
            return future.result(timeout + 5)
        except TimeoutError:
            future.cancel()
            raise

    def call_sync(
        self, vm: Vm, op: str, args: dict[str, Any] | None = None, *, timeout: float = CALL_TIMEOUT
    ) -> dict[str, Any]:
        return self.run_sync(self.call(vm, op, args, timeout=timeout), timeout + CONNECT_TIMEOUT)

    def output_sync(self, vm: Vm, argv: list[str], *, timeout: float = CALL_TIMEOUT) -> str:
        return self.run_sync(self.output(vm, argv, timeout=timeout), timeout + CONNECT_TIMEOUT)

    def wait_ready_sync(self, vm: Vm, *, timeout: float, alive: Callable[[], bool]) -> float:
        return self.run_sync(self.wait_ready(vm, timeout=timeout, alive=alive), timeout)

    def forget_soon(self, vm: Vm) -> None:
        """Drop the VM's link from any thread, the loop's own too, without waiting for it."""
        if vm.id in self._links:
            asyncio.run_coroutine_threadsafe(self.forget(vm), self.loop)

    def forget_sync(self, vm: Vm) -> None:
        if vm.id in self._links:
            self.run_sync(self.forget(vm), CONNECT_TIMEOUT)

    # internals

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_id, asyncio.Lock())

    async def _drop(self, vm_id: str, only: AgentLink | None = None) -> None:
        link = self._links.get(vm_id)
        if link is None or (only is not None and link is not only):
            return
        del self._links[vm_id]
        try:
            await link.close()
        except Exception as exc:  # a link that is already broken closes badly
            log.debug("closing the agent link of %s: %s", vm_id, exc)


def _why(exc: BaseException) -> str:
    if isinstance(exc, BangerError):
        return exc.message
    return str(exc) or type(exc).__name__
