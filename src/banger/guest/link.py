"""bangerd's end of the guest agent's wire (``banger.guest.proto``).

``AgentLink.connect`` opens the host end of a VM's agent channel (QEMU's
virtio-serial socket, or Firecracker's vsock socket with its ``CONNECT``
handshake), syncs, and agrees on a protocol version. One reader task then
hands every frame to its ``Channel``; requests run side by side on one link.

Nothing waits forever: a lost link fails every open channel with
``AgentGone`` at once, and every request a caller starts has a timeout or
ends with the link. The file, tar and control conveniences live in
``guest.ops``; exec in ``guest.exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from banger import __version__
from banger.errors import VmmError
from banger.guest import proto
from banger.guest.channel import AgentError, AgentGone, AgentVersionError, Channel
from banger.guest.exec import Completed, ExecSession, Exited, Output, run, start_exec
from banger.guest.ops import AgentOps

__all__ = [
    "AgentError",
    "AgentGone",
    "AgentInfo",
    "AgentLink",
    "AgentVersionError",
    "Channel",
    "Completed",
    "ExecSession",
    "Exited",
    "Output",
    "wait_ready",
]

log = logging.getLogger("banger.guest")

_READ_SIZE = 256 << 10
# The stream reader pauses the socket past twice this; a frame is up to 1 MiB.
_BUFFER_LIMIT = 1 << 20


@dataclass(frozen=True)
class AgentInfo:
    """What the agent said about itself in its HELLO."""

    version: int
    agent: str
    caps: tuple[str, ...]
    boot_id: str
    pid: int

    @classmethod
    def from_hello(cls, body: Mapping[str, Any]) -> AgentInfo:
        caps = body.get("caps") or ()
        return cls(
            version=int(body.get("version", 0)),
            agent=str(body.get("agent", "")),
            caps=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            boot_id=str(body.get("boot_id", "")),
            pid=int(body.get("pid", 0) or 0),
        )


def _version_error(theirs_min: object, theirs_max: object) -> AgentVersionError:
    ours = f"{proto.VERSION_MIN}-{proto.VERSION_MAX}"
    theirs = f"{theirs_min}-{theirs_max}"
    older = isinstance(theirs_max, int) and theirs_max < proto.VERSION_MIN
    hint = (
        "the image carries an older agent; pull the image again to inject the current one "
        "(`banger image pull NAME`)"
        if older
        else "this banger is older than the image's agent; upgrade banger (`banger version` "
        "shows the one installed)"
    )
    return AgentVersionError(
        f"the guest agent speaks protocol versions {theirs}, this banger speaks {ours}",
        hint=hint,
    )


async def _vsock_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
) -> None:
    """Firecracker's host-initiated vsock: ``CONNECT <port>`` answered by ``OK <n>``."""
    writer.write(f"CONNECT {port}\n".encode())
    await writer.drain()
    line = await reader.readline()
    if not line.startswith(b"OK "):
        said = line.decode(errors="replace").strip() or "the connection was closed"
        raise AgentGone(f"nothing answers on vsock port {port} in the guest yet ({said})")


async def _hello(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: proto.Decoder
) -> AgentInfo:
    writer.write(proto.SYNC)
    hello = {"min": proto.VERSION_MIN, "max": proto.VERSION_MAX, "host": f"bangerd {__version__}"}
    writer.write(proto.encode_json(0, proto.Kind.HELLO, hello))
    await writer.drain()
    while True:
        chunk = await reader.read(_READ_SIZE)
        if not chunk:
            raise AgentGone("the guest agent closed the link before it said hello")
        for frame in decoder.feed(chunk):
            if frame.channel != 0:
                continue
            if frame.kind is proto.Kind.ERROR:
                body = frame.json()
                if "min" in body or "max" in body:
                    raise _version_error(body.get("min"), body.get("max"))
                raise AgentGone(f"the guest agent refused the link: {body.get('error')}")
            if frame.kind is proto.Kind.HELLO:
                info = AgentInfo.from_hello(frame.json())
                if not proto.VERSION_MIN <= info.version <= proto.VERSION_MAX:
                    raise _version_error(info.version, info.version)
                return info


class AgentLink(AgentOps):
    """One connection to one VM's agent; see the module docstring."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: proto.Decoder,
        info: AgentInfo,
        path: str,
    ) -> None:
        self.info = info
        self.path = path
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._channels: dict[int, Channel] = {}
        self._next = 1
        self._write_lock = asyncio.Lock()
        self._gone: AgentGone | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, path: str | os.PathLike[str], *, vsock_port: int | None = None, timeout: float = 5.0
    ) -> AgentLink:
        """Connect, sync and say hello; ``AgentGone`` when nothing answers in ``timeout``."""
        where = str(path)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(where, limit=_BUFFER_LIMIT)
        except (OSError, TimeoutError) as exc:
            raise AgentGone(f"cannot reach the guest agent at {where}: {_reason(exc)}") from exc
        decoder = proto.Decoder()
        try:
            async with asyncio.timeout(timeout):
                if vsock_port is not None:
                    await _vsock_handshake(reader, writer, vsock_port)
                info = await _hello(reader, writer, decoder)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, TimeoutError):
                raise AgentGone(
                    f"the guest agent at {where} did not say hello within {timeout:g} s"
                ) from None
            if isinstance(exc, OSError | proto.ProtocolError):
                raise AgentGone(f"the guest agent at {where}: {_reason(exc)}") from exc
            raise
        log.debug("agent link %s: %s version %d", where, info.agent, info.version)
        return cls(reader, writer, decoder, info, where)

    # -- the connection ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._gone is not None

    async def _read_loop(self) -> None:
        try:
            while True:
                chunk = await self._reader.read(_READ_SIZE)
                if not chunk:
                    self._lose(AgentGone(f"the guest agent at {self.path} closed the link"))
                    return
                self._dispatch(self._decoder.feed(chunk))
        except (OSError, proto.ProtocolError) as exc:
            self._lose(AgentGone(f"the link to the guest agent at {self.path}: {_reason(exc)}"))
        except asyncio.CancelledError:
            self._lose(AgentGone("the link to the guest agent was closed", hint=None))
            raise

    def _dispatch(self, frames: list[proto.Frame]) -> None:
        for frame in frames:
            if frame.channel == 0:
                if frame.kind is proto.Kind.ERROR:
                    log.warning("agent at %s: %s", self.path, frame.payload[:200])
                continue
            channel = self._channels.get(frame.channel)
            if channel is None:
                continue  # a late WINDOW or DATA of a channel already closed
            channel.feed(frame)
            if channel.done:
                del self._channels[frame.channel]

    def _lose(self, exc: AgentGone) -> None:
        if self._gone is None:
            self._gone = exc
            log.info("%s", exc.message)
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.fail(self._gone)
        self._writer.close()

    async def _send(self, frame: bytes) -> None:
        if self._gone is not None:
            raise self._gone
        self._writer.write(frame)
        try:
            async with self._write_lock:
                await self._writer.drain()
        except OSError as exc:
            self._lose(AgentGone(f"the link to the guest agent at {self.path}: {_reason(exc)}"))
            raise self._gone from exc  # type: ignore[misc]

    async def close(self) -> None:
        """Close the link; every channel still open fails with ``AgentGone``."""
        self._lose(AgentGone("the link to the guest agent was closed", hint=None))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AgentLink:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- requests --------------------------------------------------------------------

    async def open(self, op: str, args: Mapping[str, Any] | None = None) -> Channel:
        """Start request ``op`` (one of ``proto.OPS``) on a new channel."""
        if self._gone is not None:
            raise self._gone
        number, self._next = self._next, self._next + 2
        channel = Channel(number, op, self._send)
        self._channels[number] = channel
        body = {"op": op, **(args or {})}
        try:
            await self._send(proto.encode(number, proto.Kind.OPEN, json.dumps(body).encode()))
        except BaseException:
            self._channels.pop(number, None)
            raise
        return channel

    async def call(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Run a request without streams; its CLOSE body, or ``AgentError``."""
        channel = await self.open(op, args)
        try:
            return await channel.result(timeout)
        except AgentError as exc:
            if exc.errno == "ETIMEDOUT":
                with contextlib.suppress(AgentGone):
                    await channel.cancel()
            raise

    async def exec(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        pty: tuple[int, int] | None = None,
        timeout: float | None = None,
        start_timeout: float = 30.0,
    ) -> ExecSession:
        """Start ``argv`` in the guest; returns once it runs (``AgentError`` ENOENT if not)."""
        return await start_exec(
            self,
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            pty=pty,
            timeout=timeout,
            start_timeout=start_timeout,
        )

    async def run(
        self,
        argv: list[str],
        *,
        input: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Completed:
        """Run ``argv`` to its end, its output collected in memory (for small outputs)."""
        return await run(self, argv, input=input, cwd=cwd, env=env, timeout=timeout)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def wait_ready(
    path: str | os.PathLike[str],
    *,
    vsock_port: int | None = None,
    timeout: float,
    alive: Callable[[], bool],
    attempt: float = 2.0,
) -> AgentLink:
    """Connect as soon as the VM's agent answers; a ``VmmError`` if the VM dies or time runs out.

    Each attempt is a fresh connection with a fresh SYNC (bytes a booting
    guest missed are not waited for); ``alive`` is asked between attempts
    and every tenth of a second while one runs.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: AgentGone | None = None
    while (left := deadline - loop.time()) > 0:
        _check_alive(alive)
        task = loop.create_task(
            AgentLink.connect(path, vsock_port=vsock_port, timeout=min(attempt, left))
        )
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.1)
                if not task.done():
                    _check_alive(alive)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, AgentGone):
                    await task
        try:
            return task.result()
        except AgentGone as exc:
            last = exc
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    said = f" (last: {last.message})" if last is not None else ""
    raise VmmError(
        f"the guest agent did not answer within {timeout:g} s{said}",
        hint="`banger vm logs NAME` shows how far the guest booted",
    )


def _check_alive(alive: Callable[[], bool]) -> None:
    if not alive():
        raise VmmError(
            "the VM stopped before its guest agent answered",
            hint="`banger vm logs NAME` shows the guest's console",
        )
