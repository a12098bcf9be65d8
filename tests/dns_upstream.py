"""A tiny DNS server for tests: the "host's resolver" bangerd forwards to.

Serves a few fixed names under ``example.test`` over UDP and TCP on one
port, and records each question it gets with the transport it came on.
Over UDP it cuts every answer at 512 bytes (TC set), whatever the client's
EDNS buffer, so a big answer can only be had over TCP: that is what makes
the responder's TCP fallback observable.

Run as ``python -m tests.dns_upstream HOST PORT`` to serve in another
network namespace; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from typing import cast

import dns.message
import dns.rcode
import dns.rrset

ADDRESS = "192.0.2.10"
NAME = "www.example.test"
BIG = "big.example.test"
BIG_RECORDS = [f"record-{i:02d}-" + "x" * 50 for i in range(30)]
SILENT = "silent.example.test"
GARBAGE = "garbage.example.test"
UDP_CAP = 512


class FakeUpstream:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def respond(self, wire: bytes, proto: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None  # what a fuzzing test forwarded; a real resolver drops it too
        name = query.question[0].name.to_text(omit_final_dot=True).lower()
        self.seen.append((name, proto))
        if name == SILENT:
            return None
        if name == GARBAGE:
            return b"\x00\x01garbage"
        response = dns.message.make_response(query)
        if name == NAME:
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", ADDRESS)
            )
        elif name == BIG:
            response.answer.append(
                dns.rrset.from_text_list(query.question[0].name, 60, "IN", "TXT", BIG_RECORDS)
            )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        limit = UDP_CAP if proto == "udp" else 65535
        return response.to_wire(max_size=limit, prefer_truncation=True)

    async def start(self, host: str, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host, port)
        )
        self._udp = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self._tcp = await asyncio.start_server(self._serve_tcp, host, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = self.respond(await reader.readexactly(length), "tcp")
                if reply is None:
                    await reader.read()  # say nothing until the client gives up
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: FakeUpstream) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        reply = self.server.respond(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _serve(host: str, port: int) -> None:
    server = FakeUpstream()
    await server.start(host, port)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2])))
