"""bangerd's DNS responder over real UDP and TCP sockets on loopback.

Clients from 127.0.0.2 play a VM allowed out (NAT on), clients from
127.0.0.1 one that is not. The "host's resolver" is ``tests.dns_upstream``
on another loopback port. Queries for the .vm cases are built by hand, so
the wire format is checked by something other than the library under it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.rcode
import pytest

from banger.net.dns import DnsResponder
from tests import dns_upstream as up
from tests.dns_upstream import FakeUpstream

VMS = {"web": "10.77.0.5", "db-1": "10.77.0.6"}
NAT_VM = "127.0.0.2"
OTHER_VM = "127.0.0.1"
T = TypeVar("T")


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
    """(id, rcode, A addresses) of a response."""
    message = dns.message.from_wire(reply)
    assert message.flags & dns.flags.QR, "QR must be set in a response"
    addrs = [rd.address for rrset in message.answer for rd in rrset if rrset.rdtype == 1]
    return message.id, message.rcode(), addrs


class Loop:
    """An event loop in a thread, for servers the blocking test clients talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    runner = Loop()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def upstream(loop: Loop) -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    loop.run(server.start("127.0.0.1"))
    yield server
    loop.run(server.stop())


def lookup(name: str) -> str | None:
    if name == "boom":
        raise RuntimeError("store is down")
    return VMS.get(name)


def start(loop: Loop, *upstreams: str, timeout: float = 0.5) -> DnsResponder:
    responder = DnsResponder(upstreams, timeout=timeout)
    loop.run(responder.start("127.0.0.1", 0, lookup, lambda source: source == NAT_VM))
    return responder


@pytest.fixture(scope="module")
def server(loop: Loop, upstream: FakeUpstream) -> Iterator[int]:
    """A responder on a random 127.0.0.1 port, forwarding to ``upstream``."""
    responder = start(loop, f"127.0.0.1:{upstream.port}")
    yield responder.port
    loop.run(responder.stop())


def ask_udp(
    port: int, message: bytes, timeout: float = 2.0, source: str = OTHER_VM
) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(message, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def ask_tcp(port: int, messages: list[bytes], source: str = OTHER_VM) -> list[bytes]:
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        reader = s.makefile("rb")
        for message in messages:
            s.sendall(struct.pack("!H", len(message)) + message)
            (length,) = struct.unpack("!H", reader.read(2))
            replies.append(reader.read(length))
    return replies


def outside(name: str, rdtype: str = "A", payload: int | None = None) -> dns.message.Message:
    if payload is None:
        return dns.message.make_query(name, rdtype, use_edns=False)
    return dns.message.make_query(name, rdtype, use_edns=0, payload=payload)


# --- NAME.vm, answered by banger itself


@pytest.mark.parametrize("name", ["web.vm", "web.vm.", "WEB.Vm", "db-1.vm"])
def test_a_record_for_a_known_vm(server: int, name: str) -> None:
    reply = ask_udp(server, query(name))
    assert reply is not None
    qid, rcode, addrs = decode(reply)
    assert (qid, rcode) == (0x1234, dns.rcode.NOERROR)
    assert addrs == [VMS[name.lower().rstrip(".").removesuffix(".vm")]]
    message = dns.message.from_wire(reply)
    assert message.flags & dns.flags.AA and message.answer[0].ttl == 5


def test_question_is_echoed_with_its_case(server: int) -> None:
    reply = ask_udp(server, query("WeB.vm"))
    assert reply is not None and b"\x03WeB\x02vm\x00" in reply


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("nope.vm", 1, dns.rcode.NXDOMAIN),
        ("a.web.vm", 1, dns.rcode.NXDOMAIN),
        ("web.vm", 28, dns.rcode.NOERROR),  # AAAA of a known VM: no data
        ("web.vm", 16, dns.rcode.NOERROR),
        ("vm", 1, dns.rcode.NOERROR),
        ("example.com", 1, dns.rcode.REFUSED),
        ("web.vmx", 1, dns.rcode.REFUSED),
        ("boom.vm", 1, dns.rcode.SERVFAIL),
    ],
)
def test_other_answers(server: int, name: str, qtype: int, rcode: int) -> None:
    reply = ask_udp(server, query(name, qtype))
    assert reply is not None
    _qid, got, addrs = decode(reply)
    assert (got, addrs) == (rcode, [])


def test_vm_names_are_not_forwarded_for_vms_allowed_out(
    server: int, upstream: FakeUpstream
) -> None:
    before = len(upstream.seen)
    for name, expected in (("web.vm", ["10.77.0.5"]), ("nope.vm", [])):
        reply = ask_udp(server, query(name), source=NAT_VM)
        assert reply is not None and decode(reply)[2] == expected
    assert upstream.seen[before:] == []


# --- other names: forwarded for a VM allowed out, refused for any other


def test_a_vm_allowed_out_resolves_outside_names(server: int, upstream: FakeUpstream) -> None:
    before = len(upstream.seen)
    reply = ask_udp(server, query(up.NAME, qid=0x4242), source=NAT_VM)
    assert reply is not None and decode(reply) == (0x4242, dns.rcode.NOERROR, [up.ADDRESS])
    reply = ask_udp(server, query("nothing.example.test", qid=7), source=NAT_VM)
    assert reply is not None and decode(reply) == (7, dns.rcode.NXDOMAIN, [])
    [tcp] = ask_tcp(server, [query(up.NAME, qid=9)], source=NAT_VM)
    assert decode(tcp) == (9, dns.rcode.NOERROR, [up.ADDRESS])
    assert upstream.seen[before:] == [
        (up.NAME, "udp"),
        ("nothing.example.test", "udp"),
        (up.NAME, "tcp"),  # a client on TCP is forwarded over TCP
    ]


def test_a_vm_not_allowed_out_is_refused_and_nothing_is_forwarded(
    server: int, upstream: FakeUpstream
) -> None:
    before = len(upstream.seen)
    reply = ask_udp(server, query(up.NAME), source=OTHER_VM)
    assert reply is not None and decode(reply) == (0x1234, dns.rcode.REFUSED, [])
    [tcp] = ask_tcp(server, [query(up.NAME)], source=OTHER_VM)
    assert decode(tcp)[1] == dns.rcode.REFUSED
    assert upstream.seen[before:] == []


def test_truncated_upstream_answer_is_fetched_again_over_tcp(
    server: int, upstream: FakeUpstream
) -> None:
    before = len(upstream.seen)
    # The client's EDNS buffer holds the whole answer; the upstream cuts UDP at 512 bytes.
    reply = ask_udp(server, outside(up.BIG, "TXT", payload=4096).to_wire(), source=NAT_VM)
    assert reply is not None and len(reply) > 512
    message = dns.message.from_wire(reply)
    assert not message.flags & dns.flags.TC
    texts = [b"".join(rd.strings).decode() for rd in message.answer[0]]
    assert sorted(texts) == up.BIG_RECORDS
    assert upstream.seen[before:] == [(up.BIG, "udp"), (up.BIG, "tcp")]


def test_client_without_edns_gets_tc_and_the_whole_answer_over_tcp(server: int) -> None:
    wire = outside(up.BIG, "TXT").to_wire()
    reply = ask_udp(server, wire, source=NAT_VM)
    assert reply is not None and len(reply) <= 512
    assert dns.message.from_wire(reply).flags & dns.flags.TC
    [tcp] = ask_tcp(server, [wire], source=NAT_VM)
    message = dns.message.from_wire(tcp)
    assert not message.flags & dns.flags.TC and len(message.answer[0]) == len(up.BIG_RECORDS)


def test_upstream_timeout_is_servfail_not_a_hang(server: int) -> None:
    for proto in ("udp", "tcp"):
        started = time.monotonic()
        wire = query(up.SILENT)
        if proto == "udp":
            reply = ask_udp(server, wire, timeout=5, source=NAT_VM)
        else:
            [reply] = ask_tcp(server, [wire], source=NAT_VM)
        elapsed = time.monotonic() - started
        assert reply is not None and decode(reply)[1] == dns.rcode.SERVFAIL, proto
        assert elapsed < 2.0, (proto, elapsed)  # one 0.5 s try per transport, then SERVFAIL


def test_garbage_from_the_upstream_is_servfail(server: int) -> None:
    reply = ask_udp(server, query(up.GARBAGE), timeout=5, source=NAT_VM)
    assert reply is not None and decode(reply)[1] == dns.rcode.SERVFAIL


def test_a_dead_upstream_is_skipped_for_the_next(loop: Loop, upstream: FakeUpstream) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))  # takes queries, never answers
        silent_port = dead.getsockname()[1]
        responder = start(loop, f"127.0.0.1:{silent_port}", f"127.0.0.1:{upstream.port}")
        try:
            reply = ask_udp(responder.port, query(up.NAME), timeout=5, source=NAT_VM)
            assert reply is not None and decode(reply)[2] == [up.ADDRESS]
        finally:
            loop.run(responder.stop())


def test_no_upstream_at_all_is_servfail(loop: Loop, tmp_path: Path) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("# no nameserver lines\nsearch example.test\n")
    responder = DnsResponder(resolv_conf=empty, timeout=0.5)
    loop.run(responder.start("127.0.0.1", 0, lookup, lambda source: True))
    try:
        reply = ask_udp(responder.port, query(up.NAME), source=NAT_VM)
        assert reply is not None and decode(reply)[1] == dns.rcode.SERVFAIL
        reply = ask_udp(responder.port, query("web.vm"), source=NAT_VM)
        assert reply is not None and decode(reply)[2] == ["10.77.0.5"]
    finally:
        loop.run(responder.stop())


# --- what a peer may send


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
        header + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer to itself
        header + b"\x3fabc" + b"\x00" * 10,  # label longer than the packet
    ):
        for source in (OTHER_VM, NAT_VM):
            reply = ask_udp(server, bad, source=source)
            assert reply is not None and decode(reply)[1] == dns.rcode.FORMERR, bad
    two = good[:4] + b"\x00\x02" + good[6:] + good[12:]
    reply = ask_udp(server, two)
    assert reply is not None and decode(reply)[1] == dns.rcode.FORMERR
    notify = good[:2] + b"\x20\x00" + good[4:]  # opcode 4
    reply = ask_udp(server, notify)
    assert reply is not None and decode(reply)[1] == dns.rcode.NOTIMP
    # Still answering.
    reply = ask_udp(server, good)
    assert reply is not None and decode(reply)[2] == ["10.77.0.5"]


def test_random_bytes_never_stop_the_responder(server: int) -> None:
    rng = random.Random(16)
    good = query("web.vm")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NAT_VM, 0))
        for _ in range(500):
            if rng.random() < 0.5:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
            else:  # a real query with some bytes flipped
                junk = bytearray(good)
                for _ in range(3):
                    junk[rng.randrange(len(junk))] = rng.randrange(256)
            sock.sendto(bytes(junk), ("127.0.0.1", server))
    with socket.create_connection(("127.0.0.1", server), timeout=2) as conn:
        conn.sendall(b"\x00\x05abc")  # a TCP client that stops mid-message
    # Queries past the socket's buffer or the in-flight cap are dropped, as
    # UDP allows; a client retries, as resolvers do.
    replies = (ask_udp(server, good, timeout=0.5) for _ in range(6))
    reply = next((r for r in replies if r is not None), None)
    assert reply is not None and decode(reply)[2] == ["10.77.0.5"]


def test_tcp_answers_several_queries_on_one_connection(server: int) -> None:
    replies = ask_tcp(server, [query("web.vm", qid=1), query("nope.vm", qid=2)])
    assert [decode(r)[:2] for r in replies] == [(1, dns.rcode.NOERROR), (2, dns.rcode.NXDOMAIN)]
    assert decode(replies[0])[2] == ["10.77.0.5"]


def test_udp_latency(server: int) -> None:
    message = query("web.vm")
    start_time = time.perf_counter()
    for _ in range(200):
        assert ask_udp(server, message) is not None
    per_query = (time.perf_counter() - start_time) / 200
    # Generous: it is well under a millisecond here; a slow CI box must still pass.
    assert per_query < 0.05, per_query


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (dnsutils)")
def test_dig_agrees(server: int) -> None:
    def dig(*args: str) -> list[str]:
        argv = ["dig", "+short", "+tries=1", "+time=2", "-p", str(server), "@127.0.0.1", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()

    assert dig("web.vm", "A") == ["10.77.0.5"]
    # dig sends EDNS with a cookie option; the forwarded answer still comes back.
    assert dig("-b", NAT_VM, up.NAME, "A") == [up.ADDRESS]
    assert len(dig("-b", NAT_VM, up.BIG, "TXT")) == len(up.BIG_RECORDS)


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
