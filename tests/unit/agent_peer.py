"""A scripted agent speaking raw frames of banger.guest.proto on a unix socket.

For what the real agent cannot be made to do on purpose: refuse a version,
overrun a window, vanish mid-request. Each op is a coroutine given a
``Request``; it answers through the request as the real agent would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from banger.guest import proto

Handler = Callable[["Request"], Awaitable[None]]


class Request:
    def __init__(self, peer: Peer, channel: int, body: dict[str, Any]) -> None:
        self.peer = peer
        self.channel = channel
        self.op = body.pop("op")
        self.args = body
        self.input: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.controls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.cancelled = asyncio.Event()
        self.credit = {proto.STDOUT: proto.INITIAL_WINDOW, proto.STDERR: proto.INITIAL_WINDOW}
        self.credited = asyncio.Event()

    async def send(self, stream: int, data: bytes, *, obey_window: bool = True) -> None:
        view = memoryview(data)
        while view:
            while obey_window and self.credit[stream] <= 0:
                self.credited.clear()
                await self.credited.wait()
            size = min(len(view), proto.DATA_CHUNK)
            if obey_window:
                size = min(size, self.credit[stream])
            self.credit[stream] -= size
            await self.peer.write(proto.data(self.channel, stream, bytes(view[:size])))
            view = view[size:]

    async def eof(self, stream: int) -> None:
        await self.peer.write(proto.eof(self.channel, stream))

    async def event(self, body: dict[str, Any]) -> None:
        await self.peer.write(proto.encode_json(self.channel, proto.Kind.EVENT, body))

    async def close(self, body: dict[str, Any]) -> None:
        await self.peer.write(proto.encode_json(self.channel, proto.Kind.CLOSE, body))

    async def read_input(self) -> bytes:
        """All of stream 0 up to its EOF, granting credit as it is taken."""
        out = bytearray()
        while (chunk := await self.input.get()) is not None:
            out += chunk
            await self.peer.write(proto.window(self.channel, proto.STDIN, len(chunk)))
        return bytes(out)


class Peer:
    """One listening socket; every accepted connection runs the same script."""

    def __init__(
        self,
        path: Path,
        handlers: dict[str, Handler],
        *,
        versions: tuple[int, int] = (1, 1),
        preamble: bytes = b"",
        deaf: int = 0,
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.versions = versions
        # Sent on every connection first: what an earlier connection left in flight.
        self.preamble = preamble
        # HELLOs to leave unanswered (a SYNC swallowed by a stale partial frame).
        self.deaf = deaf
        # Set: the agent hangs (its socket stays open, nothing answers).
        self.muted = False
        self.requests: list[Request] = []
        self.hellos: list[dict[str, Any]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()

    def drop(self) -> None:
        """Vanish: close every connection without a word (a crashed agent)."""
        for writer in self._writers:
            writer.transport.abort()

    async def write(self, frame: bytes) -> None:
        assert self._writer is not None
        self._writer.write(frame)
        await self._writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self._writer = writer
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            if self.preamble:
                await self.write(self.preamble)
            await reader.readuntil(proto.SYNC)
            decoder = proto.Decoder()
            while chunk := await reader.read(1 << 16):
                # A SYNC again at a frame boundary (the host's resend): the real
                # agent starts over; this script only skips it.
                for frame in decoder.feed(chunk.replace(proto.SYNC, b"")):
                    await self._frame(frame)

    async def _frame(self, frame: proto.Frame) -> None:
        if self.muted:
            return
        if frame.kind is proto.Kind.HELLO:
            body = frame.json()
            self.hellos.append(body)
            if len(self.hellos) <= self.deaf:
                return
            low, high = self.versions
            best = min(high, body["max"])
            if best < max(low, body["min"]):
                await self.write(
                    proto.encode_json(
                        0, proto.Kind.ERROR, {"error": "no common version", "min": low, "max": high}
                    )
                )
                return
            hello = {"version": best, "agent": "peer", "pid": 1, "boot_id": "b", "caps": []}
            await self.write(proto.encode_json(0, proto.Kind.HELLO, hello))
            return
        if frame.kind is proto.Kind.OPEN:
            request = Request(self, frame.channel, frame.json())
            self.requests.append(request)
            task = asyncio.get_running_loop().create_task(self.handlers[request.op](request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        request = next(r for r in self.requests if r.channel == frame.channel)
        if frame.kind is proto.Kind.DATA:
            request.input.put_nowait(frame.stream()[1])
        elif frame.kind is proto.Kind.EOF:
            request.input.put_nowait(None)
        elif frame.kind is proto.Kind.WINDOW:
            stream, increment = frame.window()
            request.credit[stream] += increment
            request.credited.set()
        elif frame.kind is proto.Kind.CONTROL:
            request.controls.put_nowait(frame.json())
        elif frame.kind is proto.Kind.CANCEL:
            request.cancelled.set()


async def relay(left: asyncio.StreamReader, right: asyncio.StreamWriter) -> None:
    try:
        while chunk := await left.read(1 << 16):
            right.write(chunk)
            await right.drain()
    finally:
        right.close()


def firecracker_uds(path: Path, agent: Path, listening_port: int) -> Awaitable[asyncio.Server]:
    """What Firecracker's vsock socket does with a host-initiated connection."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line != f"CONNECT {listening_port}\n".encode():
            writer.close()  # nothing listens on that port in the guest
            return
        writer.write(b"OK 1073741824\n")
        up_reader, up_writer = await asyncio.open_unix_connection(str(agent))
        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))

    return asyncio.start_unix_server(serve, str(path))
