"""bangerd's end of the guest agent's wire (``banger.guest.proto``).

``AgentLink.connect`` opens the host end of a VM's agent channel (QEMU's
virtio-serial socket, or Firecracker's vsock socket with its ``CONNECT``
handshake), syncs, and agrees on a protocol version. One reader task then
hands every frame to its ``Channel``; requests run side by side on one link.

Nothing waits forever: a lost link fails every open channel with
``AgentGone`` at once, a silent one is pinged and lost when the agent does
not answer (virtio-serial never closes on a dead agent), and every request
a caller starts has a timeout or ends with the link. The start of a link is
in ``guest.handshake``, the file, tar and control requests in ``guest.ops``,
exec in ``guest.exec``, and a blocking facade for threads in
``guest.linksync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from banger.errors import VmmError
from banger.guest import handshake, proto
from banger.guest.channel import AgentError, AgentGone, AgentVersionError, Channel
from banger.guest.exec import Completed, ExecSession, Exited, Output, run, start_exec
from banger.guest.handshake import AgentInfo
from banger.guest.ops import AgentOps, ListeningPort, Load, Stat

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
    "ListeningPort",
    "Load",
    "Output",
    "Stat",
    "wait_ready",
]

log = logging.getLogger("banger.guest")

_READ_SIZE = 256 << 10
# Seconds of silence before the link pings the agent (twice that without an
# answer loses it): a crashed agent behind QEMU's virtio-serial socket never
# closes it, and nothing else would notice.
KEEPALIVE = 5.0
# The stream reader pauses the socket past twice this; a frame is up to 1 MiB.
_BUFFER_LIMIT = 1 << 20


class AgentLink(AgentOps):
    """One connection to one VM's agent; see the module docstring."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: proto.Decoder,
        info: AgentInfo,
        path: str,
        keepalive: float | None = KEEPALIVE,
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
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        self._pings: deque[asyncio.Future[None]] = deque()
        self._task = loop.create_task(self._read_loop())
        self._keeper = loop.create_task(self._keep_alive(keepalive)) if keepalive else None

    @classmethod
    async def connect(
        cls,
        path: str | os.PathLike[str],
        *,
        vsock_port: int | None = None,
        timeout: float = 5.0,
        keepalive: float | None = KEEPALIVE,
    ) -> AgentLink:
        """Connect, sync and say hello; ``AgentGone`` when nothing answers in ``timeout``.

        ``keepalive``: after that many seconds without a byte from the agent,
        ping it; no answer in twice as long loses the link (see ``ping``).
        """
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
                    await handshake.vsock_connect(reader, writer, vsock_port)
                info = await handshake.hello(reader, writer, decoder)
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
        return cls(reader, writer, decoder, info, where, keepalive)

    # -- the connection ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._gone is not None

    async def wait_closed(self) -> AgentGone:
        """Wait until the link is lost or closed; why, as the error its channels got."""
        await asyncio.shield(self._task)
        assert self._gone is not None
        return self._gone.again()

    async def _read_loop(self) -> None:
        # Whatever ends this loop ends the link, so no channel outlives its reader.
        gone = AgentGone("the link to the guest agent was closed", hint=None)
        try:
            while chunk := await self._reader.read(_READ_SIZE):
                self._heard = asyncio.get_running_loop().time()
                self._dispatch(self._decoder.feed(chunk))
            gone = AgentGone(f"the guest agent at {self.path} closed the link")
        except (OSError, proto.ProtocolError) as exc:
            gone = AgentGone(f"the link to the guest agent at {self.path}: {_reason(exc)}")
        except Exception as exc:
            log.exception("agent link %s: reading failed", self.path)
            gone = AgentGone(f"the link to the guest agent at {self.path} failed: {exc!r}")
        finally:
            self._lose(gone)

    def _dispatch(self, frames: list[proto.Frame]) -> None:
        for frame in frames:
            if frame.channel == 0:
                if frame.kind is proto.Kind.HELLO:
                    self._answered()
                elif frame.kind is proto.Kind.ERROR:
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
            channel.fail(self._gone.again())
        while self._pings:
            ping = self._pings.popleft()
            if not ping.done():
                ping.set_exception(self._gone.again())
                ping.exception()
        self._writer.close()

    def _check(self) -> None:
        if self._gone is not None:
            raise self._gone.again()

    async def _send(self, frame: bytes) -> None:
        self._check()
        self._writer.write(frame)
        try:
            async with self._write_lock:
                await self._writer.drain()
        except OSError as exc:
            self._lose(AgentGone(f"the link to the guest agent at {self.path}: {_reason(exc)}"))
            self._check()

    async def close(self) -> None:
        """Close the link; every channel still open fails with ``AgentGone``."""
        self._lose(AgentGone("the link to the guest agent was closed", hint=None))
        if self._keeper is not None:
            self._keeper.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def ping(self, timeout: float = 5.0) -> float:
        """Seconds for the agent to answer a HELLO on channel 0 (proto's PING).

        No answer within ``timeout`` means the agent is gone (a crashed agent
        behind virtio-serial leaves the socket open): the link is lost and
        every channel fails with ``AgentGone``.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[None] = loop.create_future()
        self._pings.append(answer)
        began = loop.time()
        await self._send(handshake.hello_frame())
        try:
            async with asyncio.timeout(timeout):
                await answer
        except TimeoutError:
            self._lose(
                AgentGone(f"the guest agent at {self.path} did not answer for {timeout:g} s")
            )
            self._check()
        return loop.time() - began

    def _answered(self) -> None:
        while self._pings:
            ping = self._pings.popleft()
            if not ping.done():
                ping.set_result(None)
                return

    async def _keep_alive(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(AgentGone):
            while self._gone is None:
                await asyncio.sleep(every)
                if loop.time() - self._heard >= every:
                    await self.ping(2 * every)

    async def __aenter__(self) -> AgentLink:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- requests --------------------------------------------------------------------

    async def open(self, op: str, args: Mapping[str, Any] | None = None) -> Channel:
        """Start request ``op`` (one of ``proto.OPS``) on a new channel."""
        self._check()
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
    keepalive: float | None = KEEPALIVE,
    vm_name: str = "NAME",
) -> AgentLink:
    """Connect as soon as the VM's agent answers; a ``VmmError`` if the VM dies or time runs out.

    Each attempt is a fresh connection with a fresh SYNC (bytes a booting
    guest missed are not waited for); ``alive`` is asked between attempts
    and every tenth of a second while one runs. ``vm_name`` goes into the
    errors' hints.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: AgentGone | None = None
    while (left := deadline - loop.time()) > 0:
        _check_alive(alive, vm_name)
        task = loop.create_task(
            AgentLink.connect(
                path, vsock_port=vsock_port, timeout=min(attempt, left), keepalive=keepalive
            )
        )
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.1)
                if not task.done():
                    _check_alive(alive, vm_name)
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
        hint=f"`banger vm logs {vm_name}` shows how far the guest booted",
    )


def _check_alive(alive: Callable[[], bool], vm_name: str) -> None:
    if not alive():
        raise VmmError(
            "the VM stopped before its guest agent answered (its VMM exited)",
            hint=f"`banger vm logs {vm_name}` shows the guest's console;"
            f" `banger vm start {vm_name}` boots it again",
        )
