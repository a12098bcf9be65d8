"""A TCP connection made inside the guest by its agent (``connect`` of ``guest.proto``).

It reaches what no packet from the bridge can: a server bound to the
guest's loopback. ``open_connection`` returns once the agent is connected,
or raises ``AgentError`` (``errno`` ECONNREFUSED when nothing listens). The
``GuestConnection`` then reads and writes like a socket's two directions,
each with the channel's flow control: what the host does not read holds
the guest's server back, and nothing is buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from banger.guest import proto
from banger.guest.channel import AgentError, Channel, Chunk, Item

if TYPE_CHECKING:
    from banger.guest.ops import AgentOps

CAP = "connect"
CONNECT_TIMEOUT = 10.0  # the agent's own dial gives up after 5 s
_CLOSE_TIMEOUT = 10.0


class GuestConnection:
    """One connection to a guest server; made by ``open_connection``."""

    def __init__(self, channel: Channel, connected: dict[str, Any]) -> None:
        self.channel = channel
        self.local = str(connected.get("local", ""))
        self.remote = str(connected.get("remote", ""))
        self._items: AsyncIterator[Item] = channel.items()
        self._ended = False
        self._eof_sent = False

    async def read(self) -> bytes:
        """The next bytes the server sent; ``b""`` once it ended its output.

        A connection that broke (reset, link lost) raises its error here
        instead of passing for a clean end.
        """
        if self._ended:
            return b""
        async for item in self._items:
            if isinstance(item, Chunk) and item.stream == proto.STDOUT:
                if not item.data:
                    self._ended = True
                return item.data
        self._ended = True
        await self.channel.result()  # ended without EOF: its failure, raised
        return b""

    async def write(self, data: bytes) -> None:
        """Bytes for the server, as fast as the agent grants credit."""
        await self.channel.send(data)

    async def write_eof(self) -> None:
        """Half-close: the server reads its end, and may still answer."""
        await self.channel.send_eof()
        self._eof_sent = True

    async def close(self) -> None:
        """Drop the connection (safe when it has ended already).

        When both directions have ended, the agent may still be handing the
        last bytes to the server: its CLOSE is awaited (briefly) rather than
        cut short by a CANCEL that would drop them.
        """
        if self._ended and self._eof_sent and not self.channel.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.channel.wait_done(), _CLOSE_TIMEOUT)
        if not self.channel.done:
            with contextlib.suppress(AgentError):
                await self.channel.cancel()

    async def result(self, timeout: float = _CLOSE_TIMEOUT) -> dict[str, Any]:
        """The CLOSE once both directions ended: ``{"sent": N, "received": M}``."""
        return await self.channel.result(timeout)


async def open_connection(
    agent: AgentOps, port: int, host: str = "127.0.0.1", *, timeout: float = CONNECT_TIMEOUT
) -> GuestConnection:
    """Connect to ``host:port`` inside the guest (its loopback or its own addresses)."""
    channel = await agent.open("connect", {"port": port, "host": host})
    event = await channel.first_event(timeout)
    if event is None:
        await channel.result()  # the request has ended: its failure, raised
        raise AgentError(f"connect to {host}:{port} ended before it connected")
    connected = event.get("connected")
    return GuestConnection(channel, connected if isinstance(connected, dict) else {})
