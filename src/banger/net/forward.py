"""TCP forwards from host addresses to VMs: asyncio relays inside bangerd.

A forward's socket is bound in the caller's thread, so a taken port is an
error the caller sees at once; serving it then runs on the daemon's event
loop. No privilege and no nftables rule is involved: the host side is a
plain listening socket of bangerd's, which also makes 127.0.0.1 forwards
work (a DNAT rule would not apply to loopback traffic).

Where a connection goes is a ``Dial``: a coroutine called per connection
that returns the other end as an ``Upstream``. ``tcp`` dials the VM's
address on the bridge (the fast path); the daemon supplies another, through
the guest agent's channel, for servers bound to the guest's loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from banger.errors import BangerError, Conflict, UserError

log = logging.getLogger("banger.net")

CHUNK = 256 << 10
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ForwardKey:
    host_ip: str
    host_port: int

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.host_port}"


# Where a forward's connections go: resolved per connection, so a VM's address
# can be looked up when someone connects rather than fixed when it was made.
Target = Callable[[], tuple[str, int]]


class Upstream(Protocol):
    """The far end of one relayed connection."""

    async def read(self) -> bytes:
        """The next bytes; ``b""`` once the far end has ended its output."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None:
        """Half-close towards the far end."""
        ...

    async def close(self) -> None: ...


Dial = Callable[[], Awaitable[Upstream]]
# How long close() waits for the event loop to shut a listener.
CLOSE_WAIT = 5.0
# What a relay may meet while dialing or piping, besides the peer's own errors.
RelayErrors = (OSError, TimeoutError, RuntimeError, BangerError)


class TcpUpstream:
    """An ``Upstream`` over an ordinary TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        return await self.reader.read(CHUNK)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def close(self) -> None:
        self.writer.close()


async def tcp_connect(ip: str, port: int) -> TcpUpstream:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, port, limit=CHUNK), CONNECT_TIMEOUT
    )
    return TcpUpstream(reader, writer)


def tcp(target: Target) -> Dial:
    """Dial ``target()`` (looked up per connection) over TCP."""

    async def dial() -> Upstream:
        return await tcp_connect(*target())

    return dial


def bind(host_ip: str, port: int) -> socket.socket:
    """A listening socket on host_ip:port (0: any free port); errors say who holds it."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted daemon bind again while old connections linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise bind_error(host_ip, port, exc) from exc
    return sock


def bind_error(host_ip: str, port: int, exc: OSError) -> Conflict | UserError:
    where = str(ForwardKey(host_ip, port))
    if exc.errno == errno.EADDRINUSE:
        holder = port_holder(port)
        return Conflict(
            f"host port {where} is taken{f' by {holder}' if holder else ''}",
            hint="pick another host port, e.g. -p 18080:GUEST_PORT, or stop what holds it",
        )
    if exc.errno == errno.EACCES:
        return UserError(
            f"binding host port {where} needs privilege bangerd does not have",
            hint="pick a host port of 1024 or above, e.g. -p 8080:GUEST_PORT",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return UserError(
            f"{host_ip} is not an address of this host",
            hint="use 127.0.0.1 (the default), 0.0.0.0, or an address `ip -br addr` lists",
        )
    return UserError(f"cannot listen on {where}: {exc.strerror}", hint="pick another host port")


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """``pid N (COMMAND)`` of the process listening on TCP ``port``, where /proc tells."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        comm = (entry / "comm").read_text().strip()
                        return f"pid {entry.name} ({comm})"
    return None


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes listening (state 0A) on TCP ``port``, from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A":
                continue
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


class Forwarder:
    """Every open forward of the daemon; methods may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._servers: dict[ForwardKey, asyncio.Server] = {}
        # The relay tasks of each open forward, one per connection.
        self._conns: dict[ForwardKey, set[asyncio.Task[None]]] = {}

    def open(self, key: ForwardKey, dial: Dial) -> ForwardKey:
        """Listen on ``key`` (port 0: a free one) and relay to ``dial()``; the key bound."""
        sock = bind(key.host_ip, key.host_port)
        bound = ForwardKey(key.host_ip, sock.getsockname()[1])
        with self._lock:
            self._conns[bound] = set()
        self._on_loop(self._serve, bound, sock, dial)
        log.info("forwarding %s", bound)
        return bound

    def close(self, key: ForwardKey) -> None:
        """Stop listening on ``key`` and drop its connections; safe when not open.

        Returns once the port is closed, so a connection made after ``vm port remove``
        answers is refused rather than relayed by a listener about to go.
        """
        done = threading.Event()

        def close_now() -> None:
            try:
                self._close(key)
            finally:
                done.set()

        self._on_loop(close_now)
        # Bounded: a loop busy for longer still closes the port, just after we return.
        done.wait(CLOSE_WAIT)

    def is_open(self, key: ForwardKey) -> bool:
        with self._lock:
            return key in self._conns

    def _on_loop(self, func: Callable[..., object], *args: object) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            func(*args)
        else:
            self.loop.call_soon_threadsafe(func, *args)

    def _serve(self, key: ForwardKey, sock: socket.socket, dial: Dial) -> None:
        async def start() -> None:
            def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                self.loop.create_task(self._relay(key, reader, writer, dial))

            server = await asyncio.start_server(handle, sock=sock, limit=CHUNK)
            with self._lock:
                if key not in self._conns:  # closed before it started
                    server.close()
                    return
                self._servers[key] = server

        self.loop.create_task(start())

    def _close(self, key: ForwardKey) -> None:
        with self._lock:
            server = self._servers.pop(key, None)
            conns = self._conns.pop(key, set())
        if server is not None:
            server.close()
        for task in conns:
            task.cancel()
        if server is not None or conns:
            log.info("stopped forwarding %s", key)

    async def _relay(
        self,
        key: ForwardKey,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        dial: Dial,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            conns = self._conns.get(key)
            if conns is not None:
                conns.add(task)
        try:
            if conns is None:
                return
            try:
                upstream = await dial()
            except RelayErrors as exc:
                log.debug("forward %s: cannot reach the guest: %s", key, exc)
                return
            try:
                await asyncio.gather(_down(upstream, writer), _up(reader, upstream))
            finally:
                await upstream.close()
        finally:
            if conns is not None:
                conns.discard(task)
            writer.close()


async def _up(reader: asyncio.StreamReader, upstream: Upstream) -> None:
    """Client to guest until the client's EOF, then half-close so the guest sees it."""
    try:
        while data := await reader.read(CHUNK):
            await upstream.write(data)
        await upstream.write_eof()
    except RelayErrors as exc:
        log.debug("forward: towards the guest: %s", exc)
        await upstream.close()  # which ends the other direction too


async def _down(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
    """Guest to client until the guest's EOF, then half-close towards the client."""
    try:
        while data := await upstream.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except RelayErrors as exc:
        log.debug("forward: from the guest: %s", exc)
        writer.close()
