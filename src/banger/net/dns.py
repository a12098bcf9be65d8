"""bangerd's DNS responder: ``NAME.vm`` -> the VM's address, over UDP and TCP.

Authoritative for ``vm.`` only: an A query for a known VM gets one answer
(TTL 5 s, so a recreated VM's new address shows up quickly), a known name
with another type gets NOERROR and no answers, an unknown name under ``.vm``
NXDOMAIN, and anything outside ``.vm`` REFUSED (no forwarding: the host
resolver keeps answering everything else). Malformed packets get FORMERR
when their header can be read, and are dropped otherwise; nothing a peer
sends can stop the responder. Standard library only.

The daemon cannot bind port 53; it listens on an unprivileged port on the
bridge address and banger-helper's ``dns_redirect`` verb sends port 53 there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger("banger.net")

Lookup = Callable[[str], str | None]

ZONE = "vm"
TTL = 5
TYPE_A = 1
CLASS_IN = 1
CLASS_ANY = 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_HEADER = struct.Struct("!HHHHHH")
_QR, _AA, _RD = 0x8000, 0x0400, 0x0100
# A TCP client that sends nothing for this long is let go.
_TCP_IDLE = 10.0


class FormatError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    # Labels as sent (their case kept, for the echo); the name lowercased for lookups.
    wire: bytes
    name: str
    qtype: int
    qclass: int


def parse_question(message: bytes) -> Question:
    """The single question of a query; FormatError when it is malformed."""
    labels: list[str] = []
    pos = _HEADER.size
    while True:
        if pos >= len(message):
            raise FormatError("name runs past the end")
        length = message[pos]
        if length & 0xC0:
            # Compression has nothing to point back to in a query's first name.
            raise FormatError("compressed or extended label in the question")
        pos += 1
        if length == 0:
            break
        label = message[pos : pos + length]
        if len(label) != length:
            raise FormatError("label runs past the end")
        labels.append(label.decode("ascii", errors="replace"))
        pos += length
    if pos - _HEADER.size > 255:
        raise FormatError("name longer than 255 bytes")
    if pos + 4 > len(message):
        raise FormatError("question without type and class")
    qtype, qclass = struct.unpack_from("!HH", message, pos)
    name = ".".join(labels).lower()
    return Question(message[_HEADER.size : pos], name, qtype, qclass)


def vm_name(name: str) -> str | None:
    """``web`` for ``web.vm`` (lowercased, trailing dot optional); None outside .vm."""
    name = name.lower().rstrip(".")
    if name == ZONE:
        return ""
    if name.endswith("." + ZONE):
        return name[: -len(ZONE) - 1]
    return None


def _reply(query_id: int, flags: int, rcode: int, question: bytes, answers: list[bytes]) -> bytes:
    # Keep the opcode and RD of the query; we are authoritative for .vm.
    out_flags = _QR | _AA | (flags & 0x7800) | (flags & _RD) | rcode
    header = _HEADER.pack(query_id, out_flags, 1 if question else 0, len(answers), 0, 0)
    return header + question + b"".join(answers)


def _a_record(address: ipaddress.IPv4Address) -> bytes:
    # 0xC00C points at the question's name, right after the header.
    return struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + address.packed


def answer(message: bytes, lookup: Lookup) -> bytes | None:
    """The response to one DNS message, or None when it deserves no reply."""
    if len(message) < _HEADER.size:
        return None
    query_id, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(message)
    if flags & _QR:
        # A response, not a query: answering it could start a loop.
        return None
    if (flags >> 11) & 0xF != 0:
        return _reply(query_id, flags, NOTIMP, b"", [])
    if qdcount != 1:
        return _reply(query_id, flags, FORMERR, b"", [])
    try:
        q = parse_question(message)
    except FormatError as exc:
        log.debug("FORMERR for query %d: %s", query_id, exc)
        return _reply(query_id, flags, FORMERR, b"", [])
    section = q.wire + struct.pack("!HH", q.qtype, q.qclass)
    short = vm_name(q.name)
    if short is None or q.qclass not in (CLASS_IN, CLASS_ANY):
        return _reply(query_id, flags, REFUSED, section, [])
    if short == "":
        return _reply(query_id, flags, NOERROR, section, [])
    try:
        found = lookup(short)
        address = ipaddress.IPv4Address(found) if found is not None else None
    except Exception:
        log.exception("DNS lookup of %s failed", short)
        return _reply(query_id, flags, SERVFAIL, section, [])
    if address is None:
        return _reply(query_id, flags, NXDOMAIN, section, [])
    answers = [_a_record(address)] if q.qtype == TYPE_A else []
    return _reply(query_id, flags, NOERROR, section, answers)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        try:
            reply = answer(data, self.lookup)
        except Exception:
            log.exception("DNS: could not answer a %d-byte query from %s", len(data), addr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client that went away); not ours to fix.
        log.debug("DNS: %s", exc)


class DnsResponder:
    """Answers ``NAME.vm`` on ``host:port`` (UDP and TCP) until ``stop``."""

    def __init__(self) -> None:
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._lookup: Lookup = lambda name: None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int, lookup: Lookup) -> None:
        """Listen on ``host:port``; port 0 picks a free one (see ``self.port``).

        ``lookup(name)`` gets the lowercased VM name without ``.vm`` and returns
        its IPv4 address as text, or None. It runs on the event loop: keep it quick.
        """
        if self._udp is not None:
            raise RuntimeError("DnsResponder already started")
        self._lookup = lookup
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(lookup), local_addr=(host, port)
        )
        self._udp = transport
        bound = transport.get_extra_info("sockname")
        self.host, self.port = str(bound[0]), int(bound[1])
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, host, self.port)
        except OSError:
            transport.close()
            self._udp = None
            raise
        log.info("DNS responder for .%s on %s:%d (udp, tcp)", ZONE, self.host, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE)
                (length,) = struct.unpack("!H", head)
                message = await asyncio.wait_for(reader.readexactly(length), _TCP_IDLE)
                reply = answer(message, self._lookup)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("DNS: TCP client failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
