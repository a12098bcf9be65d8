"""Forwards that reach a guest server bound to its loopback, through the agent's connect.

The real relay (``net.forward``) carries bytes to the real agent run on this
host, whose loopback stands in for the guest's; the forward service's choice
of path is tested with a dialer at its seam that records what it was asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from banger.api.models import ForwardSource, PortForward, Vm, VmCreate
from banger.daemon.forwards import ForwardService, _routes
from banger.guest.link import AgentLink
from banger.net.forward import Forwarder, ForwardKey, Upstream, tcp_connect
from banger.net.portspec import parse_publish
from tests.unit.agent_host import HostAgent
from tests.unit.fakes import running_loop
from tests.unit.test_link_agent import host_agent  # noqa: F401 (the fixture)
from tests.unit.test_ports import GUEST, ask, echo, free_port, services  # noqa: F401
from tests.unit.test_vm_undo import SilentProgress


def loopback_server(answer: bytes) -> tuple[socket.socket, list[bytes]]:
    """One connection on 127.0.0.1: read to the client's half-close, then the
    sha256 of what came and ``answer``."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = bytearray()
            while chunk := conn.recv(1 << 20):
                data += chunk
            got.append(bytes(data))
            conn.sendall(hashlib.sha256(data).digest() + answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, got


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with running_loop() as running:
        yield running


def test_the_relay_carries_megabytes_through_the_agent(
    host_agent: HostAgent,  # noqa: F811
    loop: asyncio.AbstractEventLoop,
) -> None:
    link = asyncio.run_coroutine_threadsafe(AgentLink.connect(host_agent.socket), loop).result(10)
    server, got = loopback_server(answer := os.urandom(3 << 20))
    port = server.getsockname()[1]
    forwarder = Forwarder(loop)

    async def dial() -> Upstream:
        return await link.dial(port)

    key = forwarder.open(ForwardKey("127.0.0.1", 0), dial)
    upload = os.urandom(2 << 20)
    with socket.create_connection(("127.0.0.1", key.host_port), timeout=30) as conn:
        conn.sendall(upload)
        conn.shutdown(socket.SHUT_WR)  # the half-close must reach the guest server alone
        back = bytearray()
        while chunk := conn.recv(1 << 20):
            back += chunk
    assert got == [upload]
    assert bytes(back) == hashlib.sha256(upload).digest() + answer
    server.close()
    forwarder.close(key)
    asyncio.run_coroutine_threadsafe(link.close(), loop).result(10)


def test_a_refused_guest_port_closes_the_clients_connection(
    host_agent: HostAgent,  # noqa: F811
    loop: asyncio.AbstractEventLoop,
) -> None:
    link = asyncio.run_coroutine_threadsafe(AgentLink.connect(host_agent.socket), loop).result(10)
    nobody = free_port()
    forwarder = Forwarder(loop)

    async def dial() -> Upstream:
        return await link.dial(nobody)

    key = forwarder.open(ForwardKey("127.0.0.1", 0), dial)
    with socket.create_connection(("127.0.0.1", key.host_port), timeout=10) as conn:
        assert conn.recv(10) == b""  # closed at once, nothing sent
    forwarder.close(key)
    asyncio.run_coroutine_threadsafe(link.close(), loop).result(10)


def test_bytes_after_the_servers_end_still_reach_it(
    host_agent: HostAgent,  # noqa: F811
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The server ends its output first; what the client sends after that, and its
    half-close, reach the server before the relay lets the connection go."""
    link = asyncio.run_coroutine_threadsafe(AgentLink.connect(host_agent.socket), loop).result(10)
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"banner\n")
            conn.shutdown(socket.SHUT_WR)
            data = bytearray()
            while chunk := conn.recv(1 << 20):
                data += chunk
            got.append(bytes(data))
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    forwarder = Forwarder(loop)

    async def dial() -> Upstream:
        return await link.dial(port)

    key = forwarder.open(ForwardKey("127.0.0.1", 0), dial)
    late = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", key.host_port), timeout=30) as conn:
        banner = bytearray()
        while chunk := conn.recv(1024):
            banner += chunk
        assert banner == b"banner\n"
        conn.sendall(late)
        conn.shutdown(socket.SHUT_WR)
    assert done.wait(20)
    assert got == [late]
    server.close()
    forwarder.close(key)
    asyncio.run_coroutine_threadsafe(link.close(), loop).result(10)


class Dialer:
    """The agent's connect at its seam: reaches the test's "guest loopback" at GUEST."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    async def dial(self, vm: Vm, port: int, host: str) -> Upstream:
        self.asked.append((port, host))
        return await tcp_connect(GUEST, port)


class Listeners:
    def __init__(self) -> None:
        self.now: list[tuple[str, int]] = []

    async def listeners(self, vm: Vm) -> list[tuple[str, int]]:
        return list(self.now)


def _vm(services, name: str, ip: str, **create: object) -> Vm:  # noqa: F811
    vms, store = services.vms, services.store
    vm = vms.create(vms.validate(VmCreate(name=name, no_start=True, **create)), SilentProgress())
    store.db.query("UPDATE leases SET ip = ? WHERE vm_id = ?", (ip, vm.id))
    store.set_vm_state(vm.id, vm.state.RUNNING)
    return store.get_vm(name)


def test_auto_forwards_a_loopback_listener_through_the_agent(services, echo):  # noqa: F811
    # The VM's address is one where nothing listens: only the dialer reaches the echo.
    _vm(services, "lo", "127.0.0.3", forward_ports="auto")
    guest, dialer = Listeners(), Dialer()
    forwards = ForwardService(
        services.store, Forwarder(services.forwards.forwarder.loop), guest, dialer=dialer
    )

    def poll() -> list[PortForward]:
        loop = forwards.forwarder.loop
        asyncio.run_coroutine_threadsafe(forwards.poll_once(), loop).result(5)
        vm = services.store.get_vm("lo")
        return [f for f in forwards.view(vm) if f.source == ForwardSource.AUTO]

    guest.now = [("127.0.0.1", echo), ("::1", echo)]
    [shown] = poll()
    assert (shown.host_port, shown.guest_port, shown.via) == (echo, echo, "agent")
    assert ask(echo) == b"HELLO\n"
    assert dialer.asked == [(echo, "127.0.0.1")]
    # The server comes back on every address: the forward moves to the direct path.
    guest.now = [("0.0.0.0", echo)]
    assert [f.via for f in poll()] == ["direct"]
    guest.now = []
    assert poll() == []


def test_a_published_port_the_guest_refuses_tries_its_loopback(services, echo):  # noqa: F811
    host_port = free_port()
    dialer, forwards = Dialer(), services.forwards
    forwards.dialer = dialer
    vm = _vm(services, "pub", "127.0.0.3")
    forwards.publish(vm, parse_publish(f"{host_port}:{echo}"))
    vm = services.store.get_vm("pub")
    assert [f.via for f in forwards.view(vm)] == [""]  # no connection yet
    assert ask(host_port) == b"HELLO\n"
    assert dialer.asked == [(echo, "127.0.0.1")]
    assert [f.via for f in forwards.view(vm)] == ["agent"]
    forwards.close_vm(vm)


def test_routes_prefer_the_direct_path_and_ipv4_loopback() -> None:
    vm = Vm.model_construct(ip="10.0.0.5")
    found = [("::1", 1), ("127.0.0.1", 1), ("*", 2), ("127.0.0.1", 2), ("10.0.0.5", 3),
             ("172.17.0.1", 4)]  # fmt: skip
    assert _routes(found, vm, agent=True) == {1: "127.0.0.1", 2: "", 3: "", 4: "172.17.0.1"}
    assert _routes(found, vm, agent=False) == {2: "", 3: ""}


def test_vm_show_says_a_forward_goes_through_the_agent() -> None:
    from banger.cli.render import forward_text

    auto = {"host_ip": "127.0.0.1", "host_port": 8123, "guest_port": 8123, "source": "auto"}
    assert forward_text({**auto, "via": "agent"}) == (
        "127.0.0.1:8123 -> 8123/tcp (auto; via the guest agent: the guest listens on its loopback)"
    )
    assert forward_text({**auto, "via": "direct"}) == "127.0.0.1:8123 -> 8123/tcp (auto)"
