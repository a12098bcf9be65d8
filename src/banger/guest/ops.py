"""Files, tar streams and the guest's control requests, on top of ``AgentLink.open``.

Each method is one request of ``guest.proto.OPS``. Streams go through the
channel's flow control (a slow sink holds the guest back, it does not fill
the daemon's memory); results are small typed values; a failure in the
guest is an ``AgentError`` whose ``errno`` names it (ENOENT -> not_found).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from banger.guest.channel import AgentError, Channel

if TYPE_CHECKING:
    from banger.guest.connect import GuestConnection

# What a write or tar_put takes: the bytes, or an iterable of chunks of them.
Source = bytes | AsyncIterable[bytes] | Iterable[bytes]
# Where tar_get's bytes go: called per chunk, awaited when it returns an awaitable.
Sink = Callable[[bytes], Awaitable[None] | None]

_CALL_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 30.0  # from the end of a stream to its CLOSE


@dataclass(frozen=True)
class Stat:
    name: str
    type: str  # "file", "dir", "symlink", ... as the agent names them
    size: int
    mode: int  # permission bits (and setuid/setgid/sticky)
    uid: int
    gid: int
    mtime: float
    target: str | None = None  # a symlink's target

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Stat:
        target = body.get("target")
        return cls(
            name=str(body.get("name", "")),
            type=str(body.get("type", "")),
            size=int(body.get("size", 0)),
            mode=int(body.get("mode", 0)),
            uid=int(body.get("uid", 0)),
            gid=int(body.get("gid", 0)),
            mtime=float(body.get("mtime", 0)),
            target=str(target) if target is not None else None,
        )


@dataclass(frozen=True)
class ListeningPort:
    proto: str  # "tcp", "tcp6", ...
    addr: str
    port: int
    pid: int | None = None
    process: str | None = None

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> ListeningPort:
        pid, process = body.get("pid"), body.get("process")
        return cls(
            proto=str(body.get("proto", "")),
            addr=str(body.get("addr", "")),
            port=int(body.get("port", 0)),
            pid=int(pid) if pid is not None else None,
            process=str(process) if process is not None else None,
        )


@dataclass(frozen=True)
class Load:
    loadavg: tuple[float, float, float]
    uptime: float
    mem_total_kib: int
    mem_available_kib: int
    procs: int

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Load:
        avg = [float(x) for x in (body.get("loadavg") or [])][:3]
        avg += [0.0] * (3 - len(avg))
        return cls(
            loadavg=(avg[0], avg[1], avg[2]),
            uptime=float(body.get("uptime", 0)),
            mem_total_kib=int(body.get("mem_total_kib", 0)),
            mem_available_kib=int(body.get("mem_available_kib", 0)),
            procs=int(body.get("procs", 0)),
        )


async def _chunks(source: Source) -> AsyncIterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk


async def _pump(channel: Channel, source: Source) -> None:
    try:
        async for chunk in _chunks(source):
            await channel.send(chunk)
        await channel.send_eof()
    except AgentError as exc:
        # The request ended while we sent (a directory that is not there):
        # its CLOSE says why better than "takes no more input".
        if exc.errno != "EPIPE":
            raise


async def _upload(channel: Channel, source: Source) -> dict[str, Any]:
    """Send ``source`` as the channel's input, then its result.

    The source is read beside a watch on the channel: when the request ends
    or the link dies, a source that is still waiting (a slow pipe, a peer)
    is abandoned instead of holding the caller.
    """
    pump = asyncio.ensure_future(_pump(channel, source))
    ended = asyncio.ensure_future(channel.wait_done())
    try:
        await asyncio.wait({pump, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        if not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, AgentError):
                await pump
            if not channel.done:
                with contextlib.suppress(AgentError):
                    await channel.cancel()
    if pump.done() and not pump.cancelled() and pump.exception() is not None:
        if not channel.done:
            with contextlib.suppress(AgentError):
                await channel.cancel()
        raise pump.exception()  # type: ignore[misc]
    return await channel.result(_CLOSE_TIMEOUT)


class AgentOps:
    """The conveniences of ``AgentLink``; it supplies ``open`` and ``call``."""

    async def open(self, op: str, args: Mapping[str, Any] | None = None) -> Channel:
        raise NotImplementedError

    async def call(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = _CALL_TIMEOUT
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """The guest file ``path``, chunk by chunk (``AgentError`` ENOENT when it is missing)."""
        channel = await self.open("read", {"path": path})
        try:
            async for chunk in channel.output():
                yield chunk
            await channel.result(_CLOSE_TIMEOUT)
        finally:
            if not channel.done:
                with contextlib.suppress(AgentError):
                    await channel.cancel()

    async def read_bytes(self, path: str) -> bytes:
        """A small guest file, whole."""
        return b"".join([chunk async for chunk in self.read_file(path)])

    async def write_file(
        self, path: str, source: Source, mode: int = 0o644, *, mkdirs: bool = False
    ) -> dict[str, Any]:
        """Write ``source`` to guest file ``path``; it appears there whole or not at all."""
        channel = await self.open("write", {"path": path, "mode": mode, "mkdirs": mkdirs})
        return await _upload(channel, source)

    async def tar_get(self, dir: str, names: list[str], sink: Sink) -> dict[str, Any]:
        """A tar of ``names`` (relative to guest directory ``dir``), fed to ``sink``."""
        channel = await self.open("tar_get", {"dir": dir, "names": list(names)})
        try:
            async for chunk in channel.output():
                returned = sink(chunk)
                if inspect.isawaitable(returned):
                    await returned
            return await channel.result(_CLOSE_TIMEOUT)
        finally:
            if not channel.done:
                with contextlib.suppress(AgentError):
                    await channel.cancel()

    async def tar_put(self, dir: str, source: Source) -> dict[str, Any]:
        """Extract the tar ``source`` into guest directory ``dir``; the CLOSE says ``files``."""
        channel = await self.open("tar_put", {"dir": dir})
        return await _upload(channel, source)

    async def stat(self, path: str, *, follow: bool = True) -> Stat:
        result = await self.call("stat", {"path": path, "follow": follow})
        return Stat.from_wire(result.get("stat") or {})

    async def listdir(self, path: str) -> list[Stat]:
        result = await self.call("list", {"path": path})
        return [Stat.from_wire(e) for e in result.get("entries") or []]

    async def ports(self) -> list[ListeningPort]:
        """Sockets listening in the guest."""
        result = await self.call("ports")
        return [ListeningPort.from_wire(p) for p in result.get("ports") or []]

    async def dial(self, port: int, host: str = "127.0.0.1") -> GuestConnection:
        """A TCP connection made inside the guest (see ``guest.connect``); ``AgentError``
        ECONNREFUSED when nothing listens there."""
        from banger.guest.connect import open_connection

        return await open_connection(self, port, host)

    async def load(self) -> Load:
        return Load.from_wire(await self.call("load"))

    async def boot(self, wait: float = 0.0) -> dict[str, Any]:
        """What init the guest runs and how far it is (``wait`` s for it to finish booting)."""
        return await self.call("boot", {"wait": wait}, timeout=wait + _CALL_TIMEOUT)

    async def poweroff(self) -> None:
        """Ask the guest to power off; returns once the agent has taken the request."""
        await self.call("poweroff")

    async def set_identity(
        self,
        *,
        hostname: str | None = None,
        ip: str | None = None,
        gateway: str | None = None,
        mac: str | None = None,
        host_key: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """A new identity after a snapshot restore; ``ip`` as ``a.b.c.d/n``,
        ``host_key`` as (private key text, public key line)."""
        args: dict[str, Any] = {
            k: v
            for k, v in (("hostname", hostname), ("ip", ip), ("gateway", gateway), ("mac", mac))
            if v is not None
        }
        if host_key is not None:
            args["host_key"] = {"private": host_key[0], "public": host_key[1]}
        return await self.call("identity", args)

    async def set_clock(self, unix_ns: int | None = None) -> dict[str, Any]:
        """Set the guest's clock to the host's (or to ``unix_ns``)."""
        return await self.call("clock", {"unix_ns": time.time_ns() if unix_ns is None else unix_ns})

    async def add_entropy(self, n: int = 256) -> dict[str, Any]:
        """Mix ``n`` fresh random bytes from the host into the guest's pool."""
        data = base64.b64encode(os.urandom(n)).decode()
        return await self.call("entropy", {"data": data})
