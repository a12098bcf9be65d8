"""The .vm DNS responder over real sockets on 127.0.0.1, with hand-built queries."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from banger.net import dns
from banger.net.dns import DnsResponder

VMS = {"web": "10.77.0.5", "db-1": "10.77.0.6"}


def query(name: str, qtype: int = 1, qid: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(
        bytes([len(part)]) + part.encode() for part in name.rstrip(".").split(".") if part
    )
    return (
        struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def decode(reply: bytes) -> tuple[int, int, list[str]]:
    """(id, rcode, A addresses) of a response to one of our queries."""
    qid, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", reply)
    pos = 12
    for _ in range(qd):
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 5
    addrs = []
    for _ in range(an):
        _ptr, rtype, _cls, ttl, rdlen = struct.unpack_from("!HHHIH", reply, pos)
        assert ttl == 5
        pos += 12
        if rtype == 1:
            addrs.append(str(ipaddress.IPv4Address(reply[pos : pos + rdlen])))
        pos += rdlen
    assert flags & 0x8000, "QR must be set in a response"
    return qid, flags & 0xF, addrs


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A responder on a random 127.0.0.1 port, its loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    responder = DnsResponder()

    def lookup(name: str) -> str | None:
        if name == "boom":
            raise RuntimeError("store is down")
        return VMS.get(name)

    asyncio.run_coroutine_threadsafe(responder.start("127.0.0.1", 0, lookup), loop).result(5)
    yield responder.port
    asyncio.run_coroutine_threadsafe(responder.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def ask_udp(port: int, message: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, ("127.0.0.1", port))
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def ask_tcp(port: int, messages: list[bytes]) -> list[bytes]:
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        reader = sock.makefile("rb")
        for message in messages:
            sock.sendall(struct.pack("!H", len(message)) + message)
            (length,) = struct.unpack("!H", reader.read(2))
            replies.append(reader.read(length))
    return replies


@pytest.mark.parametrize("name", ["web.vm", "web.vm.", "WEB.Vm", "db-1.vm"])
def test_a_record_for_a_known_vm(server: int, name: str) -> None:
    reply = ask_udp(server, query(name))
    assert reply is not None
    qid, rcode, addrs = decode(reply)
    assert (qid, rcode) == (0x1234, dns.NOERROR)
    assert addrs == [VMS[name.lower().rstrip(".").removesuffix(".vm")]]


def test_question_is_echoed_with_its_case(server: int) -> None:
    reply = ask_udp(server, query("WeB.vm"))
    assert reply is not None and b"\x03WeB\x02vm\x00" in reply


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("nope.vm", 1, dns.NXDOMAIN),
        ("a.web.vm", 1, dns.NXDOMAIN),
        ("web.vm", 28, dns.NOERROR),  # AAAA of a known VM: no data
        ("web.vm", 16, dns.NOERROR),
        ("vm", 1, dns.NOERROR),
        ("example.com", 1, dns.REFUSED),
        ("web.vmx", 1, dns.REFUSED),
        ("boom.vm", 1, dns.SERVFAIL),
    ],
)
def test_other_answers(server: int, name: str, qtype: int, rcode: int) -> None:
    reply = ask_udp(server, query(name, qtype))
    assert reply is not None
    _qid, got, addrs = decode(reply)
    assert (got, addrs) == (rcode, [])


def test_malformed_packets_never_stop_the_responder(server: int) -> None:
    good = query("web.vm")
    header = good[:12]
    # Too short for a header: dropped silently.
    assert ask_udp(server, b"\x12", timeout=0.3) is None
    # A response, not a query: no answer, or two responders could loop.
    assert ask_udp(server, struct.pack("!H", 1) + b"\x81\x80" + good[4:], timeout=0.3) is None
    for bad in (
        header,  # no question at all
        header + b"\x03web",  # label runs past the end
        header + b"\x03web\x02vm\x00",  # no type and class
        header + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer in the question
        header + b"\x3fabc" + b"\x00" * 10,  # label longer than the packet
    ):
        reply = ask_udp(server, bad)
        assert reply is not None and decode(reply)[1] == dns.FORMERR
    two = good[:4] + b"\x00\x02" + good[6:]
    reply = ask_udp(server, two)
    assert reply is not None and decode(reply)[1] == dns.FORMERR
    notify = good[:2] + b"\x20\x00" + good[4:]  # opcode 4
    reply = ask_udp(server, notify)
    assert reply is not None and decode(reply)[1] == dns.NOTIMP
    # Still answering.
    reply = ask_udp(server, good)
    assert reply is not None and decode(reply)[2] == ["10.77.0.5"]


def test_tcp_answers_several_queries_on_one_connection(server: int) -> None:
    replies = ask_tcp(server, [query("web.vm", qid=1), query("nope.vm", qid=2)])
    assert [decode(r)[:2] for r in replies] == [(1, dns.NOERROR), (2, dns.NXDOMAIN)]
    assert decode(replies[0])[2] == ["10.77.0.5"]


def test_udp_latency(server: int) -> None:
    message = query("web.vm")
    start = time.perf_counter()
    for _ in range(200):
        assert ask_udp(server, message) is not None
    per_query = (time.perf_counter() - start) / 200
    # Generous: it is tens of microseconds here; a slow CI box must still pass.
    assert per_query < 0.05, per_query


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (dnsutils)")
def test_dig_agrees(server: int) -> None:
    out = subprocess.run(
        ["dig", "+short", "+tries=1", "+time=2", "-p", str(server), "@127.0.0.1", "web.vm", "A"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["10.77.0.5"]


def test_start_twice_and_port_in_use() -> None:
    async def scenario() -> None:
        first = DnsResponder()
        await first.start("127.0.0.1", 0, VMS.get)
        with pytest.raises(RuntimeError):
            await first.start("127.0.0.1", 0, VMS.get)
        second = DnsResponder()
        with pytest.raises(OSError):
            await second.start("127.0.0.1", first.port, VMS.get)
        await first.stop()
        await first.stop()

    asyncio.run(scenario())
