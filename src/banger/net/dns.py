"""bangerd's DNS responder for VMs: ``NAME.vm`` answered here, other names forwarded.

What a client gets, over UDP or TCP:

- ``NAME.vm``: banger is authoritative. An A query for a known VM gets one
  answer (TTL 5 s, so a recreated VM's new address shows up quickly), a known
  name with another type NOERROR and no answers, an unknown name NXDOMAIN.
- Any other name, from a client allowed out (a VM with NAT; the daemon's
  ``allowed_out`` callback decides by source address): the query is forwarded
  to the host's own resolvers (``banger.net.upstream``) and their answer is
  relayed. A UDP answer that comes back truncated is asked again over TCP; a
  client on TCP is forwarded over TCP; a client on UDP gets at most what its
  EDNS buffer (or 512 bytes) holds, truncated with TC set past that, so it
  retries over TCP. No upstream answering in time gives SERVFAIL.
- Any other name from any other client: REFUSED. A VM without NAT has no
  way out, and its DNS must not become one.

The wire format, EDNS, truncation and the upstream exchange are dnspython's.
Malformed packets get FORMERR when their header can be read and are dropped
otherwise; responses are never answered (two responders could loop).
Nothing a peer sends can stop the responder.

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
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from banger.net.upstream import RESOLV_CONF, HostResolvers

log = logging.getLogger("banger.net")

Lookup = Callable[[str], str | None]
AllowedOut = Callable[[str], bool]

ZONE = dns.name.from_text("vm.")
TTL = 5
# Per upstream and attempt; a glibc client waits 5 s before it retries.
UPSTREAM_TIMEOUT = 2.0
# Every forward ends by then, whatever the number of upstreams.
FORWARD_BUDGET = 4.5
# Queries in flight over UDP; past this, new ones are dropped (a flood must
# not grow the daemon's memory) and the clients retry.
MAX_PENDING = 256
# Without EDNS a UDP DNS message holds at most 512 bytes (RFC 1035).
UDP_LIMIT = 512
# A TCP client that sends nothing for this long is let go.
_TCP_IDLE = 10.0


def nobody(source: str) -> bool:
    return False


def vm_name(name: dns.name.Name) -> str | None:
    """``web`` for ``web.vm.`` (lowercased); "" for ``vm.`` itself; None outside .vm."""
    if name == ZONE:
        return ""
    if not name.is_subdomain(ZONE):
        return None
    return name.relativize(ZONE).to_text().lower()


def header_error(wire: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """A bare error reply to a message dnspython cannot parse; None for responses."""
    if len(wire) < 12:
        return None
    query_id, flags = struct.unpack_from("!HH", wire)
    if flags & dns.flags.QR:
        return None
    reply = dns.message.Message(id=query_id)
    reply.flags = dns.flags.QR | (flags & dns.flags.RD)
    reply.set_opcode(dns.opcode.from_flags(flags))
    reply.set_rcode(rcode)
    return reply.to_wire()


def _reply(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


class Answerer:
    """Turns one query into its response; shared by the UDP and TCP sides."""

    def __init__(
        self,
        lookup: Lookup,
        allowed_out: AllowedOut,
        upstreams: HostResolvers,
        timeout: float,
    ) -> None:
        self.lookup = lookup
        self.allowed_out = allowed_out
        self.upstreams = upstreams
        # Where the responder itself listens, once bound.
        self.own_address, self.own_port = "", 0
        self.timeout = timeout

    async def answer(self, wire: bytes, source: str, *, tcp: bool) -> bytes | None:
        """The response to one DNS message, or None when it deserves no reply."""
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:
            # Whatever is wrong with it, the peer's bytes end here.
            log.debug("DNS: unparsable %d-byte message from %s: %s", len(wire), source, exc)
            return header_error(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY:
            response = _reply(query, dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response = _reply(query, dns.rcode.FORMERR)
        else:
            short = vm_name(query.question[0].name)
            if short is not None:
                response = self._local(query, short)
            elif self._may_forward(source):
                response = await self._forward(query, tcp=tcp)
            else:
                response = _reply(query, dns.rcode.REFUSED)
        limit = 65535 if tcp else max(UDP_LIMIT, query.payload if query.edns >= 0 else 0)
        try:
            return response.to_wire(max_size=limit, prefer_truncation=True)
        except Exception:
            # An upstream answer dnspython read but cannot write back out.
            log.exception("DNS: cannot write the answer to a query from %s", source)
            return _reply(query, dns.rcode.SERVFAIL).to_wire()

    def _local(self, query: dns.message.Message, short: str) -> dns.message.Message:
        question = query.question[0]
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            return _reply(query, dns.rcode.REFUSED)
        response = _reply(query, dns.rcode.NOERROR)
        response.flags |= dns.flags.AA
        if short == "":
            return response
        try:
            found = self.lookup(short)
            address = ipaddress.IPv4Address(found) if found is not None else None
        except Exception:
            log.exception("DNS lookup of %s failed", short)
            return _reply(query, dns.rcode.SERVFAIL)
        if address is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            # The question's own name object: the answer keeps the case it was asked in.
            rrset = dns.rrset.from_text(question.name, TTL, "IN", "A", str(address))
            response.answer.append(rrset)
        return response

    def _may_forward(self, source: str) -> bool:
        try:
            return bool(self.allowed_out(source))
        except Exception:
            log.exception("DNS: cannot tell whether %s may resolve outside names", source)
            return False

    async def _forward(self, query: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        client_id = query.id
        # A fresh id (and dnspython's fresh source port) towards the upstream:
        # the client's own id is its to choose, not ours to reuse.
        query.id = dns.entropy.random_16()
        try:
            async with asyncio.timeout(FORWARD_BUDGET):
                response = await self._ask_upstreams(query, tcp=tcp)
        except TimeoutError:
            response = None
        finally:
            query.id = client_id
        if response is None:
            return _reply(query, dns.rcode.SERVFAIL)
        response.id = client_id
        return response

    async def _ask_upstreams(
        self, query: dns.message.Message, *, tcp: bool
    ) -> dns.message.Message | None:
        for upstream in self.upstreams.current():
            if upstream.address == self.own_address and upstream.port in (53, self.own_port):
                continue  # ourselves: the bridge's port 53 is redirected to us
            try:
                if tcp:
                    return await dns.asyncquery.tcp(
                        query, upstream.address, self.timeout, upstream.port
                    )
                response, _used_tcp = await dns.asyncquery.udp_with_fallback(
                    query, upstream.address, self.timeout, upstream.port, ignore_unexpected=True
                )
                return response
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                log.debug("DNS: upstream %s failed: %r", upstream, exc)
        return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        if len(self.pending) >= MAX_PENDING:
            log.debug("DNS: %d queries in flight, dropping one from %s", MAX_PENDING, addr)
            return
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, data: bytes, addr: tuple[str | int, int]) -> None:
        try:
            reply = await self.answerer.answer(data, str(addr[0]), tcp=False)
        except Exception:
            log.exception("DNS: could not answer a %d-byte query from %s", len(data), addr)
            return
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client that went away); not ours to fix.
        log.debug("DNS: %s", exc)

    def cancel(self) -> None:
        for task in list(self.pending):
            task.cancel()


class DnsResponder:
    """Answers DNS for VMs on ``host:port`` (UDP and TCP) until ``stop``.

    ``upstreams`` (``IP`` or ``IP:PORT`` strings) replaces the host's
    resolv.conf as the place other names are forwarded to.
    """

    def __init__(
        self,
        upstreams: tuple[str, ...] = (),
        *,
        timeout: float = UPSTREAM_TIMEOUT,
        resolv_conf: Path = RESOLV_CONF,
    ) -> None:
        self._resolvers = HostResolvers(upstreams, resolv_conf)
        self._timeout = timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _Udp | None = None
        self._tcp: asyncio.Server | None = None
        self._answerer: Answerer | None = None
        self.host = ""
        self.port = 0

    async def start(
        self, host: str, port: int, lookup: Lookup, allowed_out: AllowedOut = nobody
    ) -> None:
        """Listen on ``host:port``; port 0 picks a free one (see ``self.port``).

        ``lookup(name)`` gets the lowercased VM name without ``.vm`` and returns
        its IPv4 address as text, or None. ``allowed_out(address)`` says whether
        the client at that source address may resolve names outside ``.vm``.
        Both run on the event loop: keep them quick.
        """
        if self._udp is not None:
            raise RuntimeError("DnsResponder already started")
        answerer = Answerer(lookup, allowed_out, self._resolvers, self._timeout)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Udp(answerer), local_addr=(host, port)
        )
        bound = transport.get_extra_info("sockname")
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, host, int(bound[1]))
        except OSError:
            transport.close()
            raise
        self._udp, self._udp_protocol, self._answerer = transport, protocol, answerer
        self.host, self.port = str(bound[0]), int(bound[1])
        answerer.own_address, answerer.own_port = self.host, self.port
        log.info("DNS responder for .vm on %s:%d (udp, tcp)", self.host, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._udp_protocol is not None:
            self._udp_protocol.cancel()
            self._udp_protocol = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answerer = self._answerer
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        try:
            while answerer is not None:
                head = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE)
                (length,) = struct.unpack("!H", head)
                message = await asyncio.wait_for(reader.readexactly(length), _TCP_IDLE)
                reply = await answerer.answer(message, source, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("DNS: TCP client %s failed", source)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
