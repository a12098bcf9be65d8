"""AgentLink.dial against the real banger-agent run on this host.

The agent's loopback is this host's, so a server on 127.0.0.1 here plays a
guest server bound to the guest's loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from banger.guest.connect import CAP
from banger.guest.link import AgentError, AgentLink
from tests.unit.agent_host import HostAgent
from tests.unit.test_link_agent import host_agent, on_agent  # noqa: F401 (the fixture)


async def echo_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # the host's half-close comes back as the echo's end
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_bytes_both_ways_through_an_echo(host_agent: HostAgent) -> None:  # noqa: F811
    payload = os.urandom(4 << 20)

    async def scenario(link: AgentLink) -> None:
        assert CAP in link.info.caps
        server, port = await echo_server()
        async with server:
            conn = await link.dial(port)
            assert conn.remote == f"127.0.0.1:{port}"

            async def send() -> None:
                for at in range(0, len(payload), 100_000):
                    await conn.write(payload[at : at + 100_000])
                await conn.write_eof()

            got = bytearray()
            sender = asyncio.ensure_future(send())
            while chunk := await conn.read():
                got += chunk
            await sender
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            assert await conn.result() == {"ok": True, "sent": len(payload),
                                           "received": len(payload)}  # fmt: skip
            assert await conn.read() == b""

    on_agent(host_agent, scenario)


def test_a_refused_port_is_an_agent_error(host_agent: HostAgent) -> None:  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]

        async def scenario(link: AgentLink) -> None:
            with pytest.raises(AgentError) as caught:
                await link.dial(port)
            assert caught.value.errno == "ECONNREFUSED"
            assert f"nothing listens on 127.0.0.1:{port} in the guest" in caught.value.message
            # The link is fine afterwards.
            assert (await link.run(["true"])).exited.status == 0

        on_agent(host_agent, scenario)


def test_close_drops_a_connection_the_server_holds_open(host_agent: HostAgent) -> None:  # noqa: F811
    async def scenario(link: AgentLink) -> None:
        ended = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # to EOF: the agent closed its side
            ended.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            conn = await link.dial(server.sockets[0].getsockname()[1])
            await conn.write(b"hi")
            await conn.close()
            await asyncio.wait_for(ended.wait(), 10)
            with pytest.raises(AgentError) as caught:
                await conn.result()
            assert caught.value.errno == "ECANCELED"

    on_agent(host_agent, scenario)
