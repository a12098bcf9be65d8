"""One request on the agent link: its streams, its flow control, its result.

A ``Channel`` is what ``AgentLink.open`` returns. Bytes the agent sends
(stream 1, stream 2) wait in the channel until the caller reads them, and
the agent gets new credit (WINDOW) only for bytes the caller has taken, so
an unread channel holds at most ``proto.INITIAL_WINDOW`` bytes per stream
however much the guest produces. Bytes the caller sends (stream 0) wait for
the agent's credit the same way. Every wait ends when the request ends or
the link dies (``AgentGone``), never later.
"""

from __future__ import annotations

import asyncio
import errno as errnos
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from banger.errors import BangerError, VmmError
from banger.guest import proto

# Grant credit back in pieces of this size: one WINDOW frame per 64 KiB read
# instead of one per DATA frame, and never less than a quarter of the window
# outstanding, so the agent is never left waiting for a grant that a
# consumer with an empty buffer would not send.
GRANT_STEP = proto.INITIAL_WINDOW // 4

_HINT_GONE = (
    "the guest agent stopped answering; `banger vm logs NAME` shows the guest's console, "
    "and `banger vm restart NAME` starts it again"
)

# errno names the agent reports, mapped onto the codes every API client knows.
_ERRNO_CODES = {
    "ENOENT": ("not_found", 404),
    "ENOTDIR": ("not_found", 404),
    "EEXIST": ("conflict", 409),
    "EISDIR": ("invalid", 400),
    "EINVAL": ("invalid", 400),
    "EACCES": ("invalid", 400),
    "EPERM": ("invalid", 400),
}


class AgentGone(VmmError):
    """The link to a VM's agent is lost (closed, reset, or never answered)."""

    def __init__(self, message: str, *, hint: str | None = _HINT_GONE) -> None:
        super().__init__(message, hint=hint)

    def again(self) -> AgentGone:
        """The same error as a fresh exception: one raised per waiter keeps tracebacks apart."""
        return AgentGone(self.message, hint=self.hint)


class AgentVersionError(VmmError):
    """The agent speaks no version of the protocol this banger speaks."""


class AgentError(BangerError):
    """The agent ran the request and it failed in the guest (``errno`` as the agent named it)."""

    code = "guest"
    http_status = 502

    def __init__(self, message: str, *, errno: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno
        if errno in _ERRNO_CODES:
            self.code, self.http_status = _ERRNO_CODES[errno]

    @classmethod
    def from_close(cls, op: str, result: dict[str, Any]) -> AgentError:
        text = str(result.get("error") or "failed")
        name = result.get("errno")
        return cls(f"{op} in the guest: {text}", errno=str(name) if name else None)

    @classmethod
    def timeout(cls, op: str, seconds: float) -> AgentError:
        return cls(
            f"the guest agent did not finish {op} within {seconds:g} s",
            errno=errnos.errorcode[errnos.ETIMEDOUT],
        )


@dataclass(frozen=True)
class Chunk:
    stream: int
    data: bytes


# What arrives on a channel, in order: DATA chunks, EOFs (as empty chunks
# with eof=True), EVENTs; then the channel's end.
Item = Chunk | dict[str, Any]
Send = Callable[[bytes], Awaitable[None]]


class Channel:
    """One request; made by ``AgentLink.open``, never directly."""

    def __init__(self, number: int, op: str, send: Send) -> None:
        self.number = number
        self.op = op
        self._send = send
        self._items: deque[Item] = deque()
        self._arrived = asyncio.Event()
        self._unread = {proto.STDOUT: 0, proto.STDERR: 0}
        self._taken = {proto.STDOUT: 0, proto.STDERR: 0}
        self._credit = proto.INITIAL_WINDOW
        self._credited = asyncio.Event()
        self._credited.set()
        self._done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._eof_sent = False

    # -- fed by the link's reader -------------------------------------------------

    def feed(self, frame: proto.Frame) -> None:
        if self._done.done():
            return
        kind = frame.kind
        if kind is proto.Kind.DATA:
            stream, data = frame.stream()
            if stream not in self._unread:
                raise proto.ProtocolError(f"DATA for stream {stream} on channel {self.number}")
            self._unread[stream] += len(data)
            if self._unread[stream] > proto.INITIAL_WINDOW:
                raise proto.ProtocolError(
                    f"the agent overran the window of stream {stream} on channel {self.number}"
                )
            self._push(Chunk(stream, data))
        elif kind is proto.Kind.EOF:
            self._push(Chunk(frame.stream()[0], b""))
        elif kind is proto.Kind.WINDOW:
            stream, increment = frame.window()
            if stream == proto.STDIN:
                self._credit += increment
                self._credited.set()
        elif kind is proto.Kind.EVENT:
            self._push(frame.json())
        elif kind is proto.Kind.CLOSE:
            self._finish(frame.json())
        elif kind is proto.Kind.ERROR:
            body = frame.json()
            self.fail(AgentError(f"the agent refused {self.op}: {body.get('error', 'no reason')}"))
        else:
            raise proto.ProtocolError(f"{kind.name} from the agent on channel {self.number}")

    def fail(self, exc: BaseException) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
            # Read by result() or by a reader of the channel; never "never retrieved".
            self._done.exception()
        self._wake()

    def _finish(self, result: dict[str, Any]) -> None:
        self._done.set_result(result)
        self._wake()

    def _push(self, item: Item) -> None:
        self._items.append(item)
        self._arrived.set()

    def _wake(self) -> None:
        self._arrived.set()
        self._credited.set()

    @property
    def done(self) -> bool:
        return self._done.done()

    # -- used by callers -------------------------------------------------------------

    async def items(self) -> AsyncIterator[Item]:
        """Everything the agent sends on this channel, in order, until it ends.

        A failure (the link lost, the request refused) is raised after the
        items that arrived before it.
        """
        while True:
            while self._items:
                item = self._items.popleft()
                if isinstance(item, Chunk) and item.data:
                    await self._took(item.stream, len(item.data))
                yield item
            if self._done.done():
                if self._done.exception() is not None:
                    raise self._done.exception()  # type: ignore[misc]
                return
            self._arrived.clear()
            await self._arrived.wait()

    async def first_event(self, timeout: float) -> dict[str, Any] | None:
        """The first EVENT (taken out of the order), or None when the request ended first."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for item in self._items:
                        if isinstance(item, dict):
                            self._items.remove(item)
                            return item
                    if self._done.done():
                        return None
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            await self.cancel()
            raise AgentError.timeout(f"starting {self.op}", timeout) from None

    async def output(self) -> AsyncIterator[bytes]:
        """The request's output (stream 1), chunk by chunk, until its EOF or the end."""
        async for item in self.items():
            if isinstance(item, Chunk) and item.stream == proto.STDOUT:
                if not item.data:
                    return
                yield item.data

    async def _took(self, stream: int, size: int) -> None:
        self._unread[stream] -= size
        self._taken[stream] += size
        if self._taken[stream] >= GRANT_STEP and not self._done.done():
            grant, self._taken[stream] = self._taken[stream], 0
            await self._send(proto.window(self.number, stream, grant))

    @property
    def unread(self) -> int:
        """Bytes that arrived and wait for the caller (both output streams)."""
        return sum(self._unread.values())

    async def send(self, data: bytes) -> None:
        """Bytes for the request's input (stream 0), as fast as the agent grants credit."""
        view = memoryview(data)
        while view:
            while self._credit <= 0 and not self._done.done():
                self._credited.clear()
                await self._credited.wait()
            self._check_open()
            size = min(len(view), self._credit, proto.DATA_CHUNK)
            self._credit -= size
            await self._send(proto.data(self.number, proto.STDIN, bytes(view[:size])))
            view = view[size:]

    async def send_eof(self) -> None:
        """The input ends here (a closed stdin, the end of a file or tar)."""
        if self._eof_sent:
            return
        self._check_open()
        self._eof_sent = True
        await self._send(proto.eof(self.number, proto.STDIN))

    async def control(self, value: dict[str, Any]) -> None:
        self._check_open()
        await self._send(proto.encode_json(self.number, proto.Kind.CONTROL, value))

    async def cancel(self) -> None:
        """Ask the agent to stop the request; its CLOSE still arrives (see ``result``)."""
        if not self._done.done():
            await self._send(proto.encode(self.number, proto.Kind.CANCEL))

    async def wait_done(self) -> None:
        """Until the request ends, whichever way (never raises its failure)."""
        await asyncio.wait({self._done})

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The CLOSE's body when ``ok``; an ``AgentError`` when the request failed."""
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(self._done)
        except TimeoutError:
            raise AgentError.timeout(self.op, timeout or 0) from None
        if not result.get("ok", False):
            raise AgentError.from_close(self.op, result)
        return result

    def _check_open(self) -> None:
        if self._done.done():
            if self._done.exception() is not None:
                raise self._done.exception()  # type: ignore[misc]
            raise AgentError(f"{self.op} has ended and takes no more input", errno="EPIPE")
