"""banger-agent's connect op over the wire: a TCP connection made by the agent.

The agent runs on this host (``--listen unix:``), so its "guest loopback" is
the host's: the servers here listen on 127.0.0.1 as a loopback-only guest
server would.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from banger.guest import proto
from tests.agent_driver import AgentClient


class Server:
    """A one-connection TCP server on 127.0.0.1 running ``handle`` in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(handle,), daemon=True)
        self.thread.start()

    def _run(self, handle: Callable[[socket.socket], None]) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                handle(conn)
        except BaseException as exc:  # seen by the test through join()
            self.error = exc

    def join(self) -> None:
        self.thread.join(30)
        self.sock.close()
        if self.error is not None:
            raise self.error


def read_to_eof(conn: socket.socket) -> bytes:
    got = bytearray()
    while chunk := conn.recv(1 << 20):
        got += chunk
    return bytes(got)


@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]  # bound, never listening: connecting is refused


def test_hello_advertises_connect(agent: AgentClient) -> None:
    assert "connect" in agent.hello().json()["caps"]


def test_megabytes_both_ways_with_half_close(agent: AgentClient) -> None:
    upload = os.urandom(3 << 20)
    answer = os.urandom(5 << 20)

    def handle(conn: socket.socket) -> None:
        # Reads to the host's half-close, then answers: EOF must travel on its own.
        got = read_to_eof(conn)
        conn.sendall(hashlib.sha256(got).digest() + answer)

    server = Server(handle)
    ch = agent.open("connect", port=server.port)
    event = ch.wait_event()["connected"]
    assert event["remote"] == f"127.0.0.1:{server.port}"
    ch.write(upload)
    ch.eof()
    result = ch.wait()
    server.join()
    assert ch.stdout == hashlib.sha256(upload).digest() + answer
    assert 1 in ch.eofs
    assert result == {"ok": True, "sent": len(upload), "received": 32 + len(answer)}


def test_the_server_may_finish_first(agent: AgentClient) -> None:
    """The server's EOF reaches the host while the host still sends; then the host ends."""
    server = Server(lambda conn: (conn.sendall(b"banner\n"), conn.shutdown(socket.SHUT_WR),
                                  read_to_eof(conn)))  # fmt: skip
    ch = agent.open("connect", port=server.port, host="127.0.0.1")
    deadline = time.monotonic() + 10
    while 1 not in ch.eofs and time.monotonic() < deadline:
        agent.pump(0.1)
    assert ch.stdout == b"banner\n" and ch.closed is None
    ch.write(b"late words")
    ch.eof()
    assert ch.wait() == {"ok": True, "sent": 10, "received": 7}
    server.join()


def test_output_waits_for_the_hosts_window(agent_socket: object) -> None:
    client = AgentClient(agent_socket, auto_grant=False)  # type: ignore[arg-type]
    client.start()
    try:
        server = Server(lambda conn: conn.sendall(b"x" * (1 << 20)))
        ch = client.open("connect", port=server.port)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            client.pump(0.1)
        assert len(ch.stdout) == proto.INITIAL_WINDOW  # the agent stopped at the window
        ch.grant(proto.STDOUT, (1 << 20) - proto.INITIAL_WINDOW)
        ch.eof()
        assert ch.wait()["received"] == 1 << 20
        assert ch.stdout == b"x" * (1 << 20)
        server.join()
    finally:
        client.close()


def test_a_refused_port_says_nothing_listens(agent: AgentClient, refused_port: int) -> None:
    result = agent.call("connect", port=refused_port)
    assert result["ok"] is False and result["errno"] == "ECONNREFUSED"
    assert f"nothing listens on 127.0.0.1:{refused_port}" in result["error"]


def test_only_the_guests_own_addresses(agent: AgentClient) -> None:
    far = agent.call("connect", port=80, host="192.0.2.1")  # TEST-NET-1: nobody's address
    assert (far["errno"], "only the guest's loopback" in far["error"]) == ("EPERM", True)
    assert agent.call("connect", port=80, host="localhost")["errno"] == "EINVAL"
    assert agent.call("connect", port=0)["errno"] == "EINVAL"
    assert agent.call("connect", port=70000)["errno"] == "EINVAL"


def test_cancel_drops_the_connection(agent: AgentClient) -> None:
    seen: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        first = conn.recv(100)
        conn.sendall(first)
        seen.append(first + read_to_eof(conn))

    server = Server(handle)
    ch = agent.open("connect", port=server.port)
    ch.wait_event()
    ch.write(b"partial")
    deadline = time.monotonic() + 10
    while ch.stdout != b"partial" and time.monotonic() < deadline:
        agent.pump(0.1)
    ch.cancel()
    assert ch.wait()["errno"] == "ECANCELED"
    server.join()
    assert seen == [b"partial"]
