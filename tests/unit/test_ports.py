"""Published ports: parsing -p, relaying real TCP, taken ports, and bad input changing nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.api.models import ForwardSource, PortForward, Vm, VmCreate
from banger.daemon.forwards import ForwardService
from banger.daemon.services import Services
from banger.errors import BangerError, Conflict, UserError
from banger.net.forward import Forwarder, ForwardKey, port_holder, tcp
from banger.net.portspec import parse_host_address, parse_publish, parse_publishes
from tests.unit.fakes import running_loop, wired_services
from tests.unit.test_vm_undo import SilentProgress


@pytest.mark.parametrize(
    ("spec", "host_ip", "host_port", "guest_port"),
    [
        ("8080:80", "127.0.0.1", 8080, 80),
        ("8080:80/tcp", "127.0.0.1", 8080, 80),
        ("0.0.0.0:8443:443", "0.0.0.0", 8443, 443),
        ("[::1]:9000:90", "::1", 9000, 90),
    ],
)
def test_publish_specs_as_docker_writes_them(spec, host_ip, host_port, guest_port):
    forward = parse_publish(spec)
    assert (forward.host_ip, forward.host_port, forward.guest_port) == (
        host_ip,
        host_port,
        guest_port,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80", "-p '80' is not HOST_PORT:GUEST_PORT"),
        ("8080:", "-p '8080:' is not HOST_PORT:GUEST_PORT"),
        ("0:80", "host port '0' is not a port number between 1 and 65535"),
        ("8080:65536", "guest port '65536' is not a port number between 1 and 65535"),
        ("http:80", "host port 'http' is not a port number between 1 and 65535"),
        ("8080:²", "guest port '²' is not a port number between 1 and 65535"),
        ("1.2.3:80:80", "'1.2.3' in '1.2.3:80:80' is not an IP address of this host"),
        ("8080:80/udp", "-p '8080:80/udp' asks for udp; banger forwards TCP only"),
    ],
)
def test_a_malformed_publish_is_one_line_with_a_hint(spec, message):
    with pytest.raises(UserError) as info:
        parse_publish(spec)
    assert info.value.message == message
    assert info.value.hint and "\n" not in info.value.message


def test_one_host_port_twice_is_refused():
    with pytest.raises(UserError, match="given twice"):
        parse_publishes(["8080:80", "127.0.0.1:8080:81"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", (None, 8080)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:8080:80", ("0.0.0.0", 8080)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_port_remove_names_a_forward_by_its_host_side(text, expected):
    assert parse_host_address(text) == expected


# Another loopback address stands in for a VM's: its ports are not the host's 127.0.0.1 ones.
GUEST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP server at GUEST (the "guest") that answers each line upper-cased."""
    server = socket.create_server((GUEST, 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    server.close()


def ask(port: int, text: bytes = b"hello\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(text)
        conn.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
        return out


def wait_refused(port: int, timeout: float = 3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            pass  # met the listener as it closed; the next try sees it gone
        time.sleep(0.05)
    return False


def test_a_forward_relays_both_ways_and_refuses_once_closed(echo):
    with running_loop() as loop:
        forwarder = Forwarder(loop)
        key = forwarder.open(ForwardKey("127.0.0.1", 0), tcp(lambda: (GUEST, echo)))
        assert ask(key.host_port) == b"HELLO\n"
        big = os.urandom(3 << 20).hex().encode() + b"\n"
        assert ask(key.host_port, big) == big.upper()
        forwarder.close(key)
        assert wait_refused(key.host_port)


def test_a_taken_port_names_the_process_holding_it():
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    with holder, running_loop() as loop, pytest.raises(Conflict) as info:
        Forwarder(loop).open(ForwardKey("127.0.0.1", port), tcp(lambda: ("127.0.0.1", 1)))
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert (
        info.value.message == f"host port 127.0.0.1:{port} is taken by pid {os.getpid()} ({comm})"
    )
    assert info.value.hint


def test_a_port_nothing_listens_on_has_no_holder():
    assert port_holder(free_port()) is None


@pytest.fixture
def services(settings, store, tmp_path) -> Iterator[Services]:
    with wired_services(settings, store, tmp_path) as services:
        yield services


def test_create_listens_on_its_ports_and_delete_frees_them(services, store):
    port = free_port()
    vms = services.vms
    req = vms.validate(VmCreate(name="web", ports=[f"{port}:80"], no_start=True))
    vm = vms.create(req, SilentProgress())
    assert [(f.host_ip, f.host_port, f.guest_port) for f in vm.forwards] == [
        ("127.0.0.1", port, 80)
    ]
    assert store.get_vm("web").forwards[0].host_port == port
    # The host port is the VM's now, whether the VM runs or not.
    with pytest.raises(Conflict, match="already forwarded to VM 'web'"):
        vms.validate(VmCreate(name="other", ports=[f"{port}:80"]))
    vms.delete("web", SilentProgress())
    assert wait_refused(port)
    assert vms.validate(VmCreate(name="other", ports=[f"{port}:80"])).vm.forwards


def test_a_taken_host_port_fails_the_create_before_anything_exists(services, store, settings):
    holder = socket.create_server(("127.0.0.1", 0))
    with holder, pytest.raises(Conflict, match="is taken by pid"):
        services.vms.validate(VmCreate(name="web", ports=[f"{holder.getsockname()[1]}:80"]))
    assert store.list_vms() == [] and store.lease_count() == 0
    assert not settings.vms_dir.exists() or list(settings.vms_dir.iterdir()) == []


def test_port_add_and_remove_on_an_existing_vm(services, store, echo):
    vms, forwards = services.vms, services.forwards
    vm = vms.create(vms.validate(VmCreate(name="web", no_start=True)), SilentProgress())
    # The VM's address stands in for the guest: point the forward at the echo server.
    store.db.query("UPDATE leases SET ip = '127.0.0.2' WHERE vm_id = ?", (vm.id,))
    port = free_port()
    forwards.publish(store.get_vm("web"), parse_publish(f"{port}:{echo}"))
    assert ask(port) == b"HELLO\n"
    assert [f.host_port for f in vms.show("web").forwards] == [port]
    forwards.unpublish(store.get_vm("web"), store.get_vm("web").forwards[0])
    assert wait_refused(port)
    assert store.get_vm("web").forwards == []


def test_restore_reopens_recorded_forwards_and_reports_a_taken_one(services, store, settings):
    vms = services.vms
    port, taken = free_port(), socket.create_server(("127.0.0.1", 0))
    vm = vms.create(
        vms.validate(VmCreate(name="web", ports=[f"{port}:80"], no_start=True)), SilentProgress()
    )
    services.forwards.close_vm(vm)
    assert wait_refused(port)
    store.add_forward(vm.id, parse_publish(f"{taken.getsockname()[1]}:81"))
    with taken, running_loop() as loop:
        fresh = ForwardService(store, Forwarder(loop))
        problems = fresh.restore(store.list_vms())
        assert len(problems) == 1 and "is taken by pid" in problems[0]
        assert fresh.forwarder.is_open(ForwardKey("127.0.0.1", port))
        shown = fresh.view(store.get_vm("web"))
        assert {f.host_port: bool(f.error) for f in shown} == {
            port: False,
            taken.getsockname()[1]: True,
        }
        fresh.close_vm(store.get_vm("web"))


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (VmCreate(name="w", ports=["80"]), "-p '80' is not HOST_PORT:GUEST_PORT"),
        (VmCreate(name="w", ports=["8080:99999"]), "guest port '99999' is not a port number"),
        (VmCreate(name="w", mounts=["/nonexistent-dir:/src"]), "/nonexistent-dir does not exist"),
        (VmCreate(name="w", mounts=["/etc/hostname:/src"]), "is not a directory"),
        (VmCreate(name="w", mounts=["/tmp:src"]), "must be an absolute path"),
        (VmCreate(name="w", mounts=["/:/host"]), "would share the host's whole filesystem"),
        (VmCreate(name="w", mounts=["/tmp:/"]), "would hide the guest's whole root"),
        (VmCreate(name="w", mounts=["/tmp"]), "is not HOST_DIR:GUEST_DIR[:ro]"),
        (VmCreate(name="w", mounts=["/tmp:/a:rx"]), "is not HOST_DIR:GUEST_DIR[:ro]"),
    ],
)
def test_bad_ports_and_mounts_are_refused_and_create_nothing(services, store, req, message):
    with pytest.raises(UserError) as info:
        services.vms.validate(req)
    assert message in info.value.message
    assert info.value.hint and "\n" not in info.value.message
    assert store.list_vms() == []


def test_a_mount_of_bangers_own_state_is_refused(services, settings):
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "vms").mkdir(exist_ok=True)
    for path in (settings.home, settings.home / "vms"):
        with pytest.raises(UserError, match="holds banger's own state"):
            services.vms.validate(VmCreate(name="w", mounts=[f"{path}:/state"]))


def test_mounts_are_refused_under_firecracker(services):
    from banger.daemon.mounts import check_mounts

    with pytest.raises(UserError) as info:
        check_mounts(["/tmp:/src"], services.settings, vmm="firecracker")
    assert "Firecracker" in info.value.message
    assert "`banger vm workspace prepare`" in (info.value.hint or "")
    assert "`banger vm cp`" in (info.value.hint or "")


def test_mounts_need_a_kernel_with_9p(services):
    # The test store's kernel has no modules at all, so no 9p either.
    with pytest.raises(UserError, match="needs virtio-9p in the guest"):
        services.vms.validate(VmCreate(name="w", mounts=["/tmp:/src"]))


class Listeners:
    """The guest agent's `ports` answer, set by the test."""

    def __init__(self) -> None:
        self.now: list[tuple[str, int]] = []

    async def listeners(self, vm: Vm) -> list[tuple[str, int]]:
        return list(self.now)


def test_auto_forwarding_follows_the_guests_listeners(services, store, echo):
    vms = services.vms
    vm = vms.create(
        vms.validate(VmCreate(name="auto", forward_ports="auto", no_start=True)), SilentProgress()
    )
    store.db.query("UPDATE leases SET ip = '127.0.0.2' WHERE vm_id = ?", (vm.id,))
    store.set_vm_state(vm.id, vm.state.RUNNING)
    guest = Listeners()
    forwards = ForwardService(store, Forwarder(services.forwards.forwarder.loop), guest)

    def poll() -> list[PortForward]:
        loop = forwards.forwarder.loop
        asyncio.run_coroutine_threadsafe(forwards.poll_once(), loop).result(5)
        return [f for f in forwards.view(store.get_vm("auto")) if f.source == ForwardSource.AUTO]

    # The echo server plays a guest listener on every address; one on the guest's
    # loopback the relay cannot reach, and its SSH server are left alone.
    guest.now = [("0.0.0.0", echo), ("127.0.0.1", 5432), ("*", 22)]
    shown = poll()
    assert [(f.host_ip, f.host_port, f.guest_port) for f in shown] == [("127.0.0.1", echo, echo)]
    assert ask(echo) == b"HELLO\n"
    guest.now.append(("*", 80))
    shown = poll()
    privileged = next(f for f in shown if f.guest_port == 80)
    assert privileged.host_port >= 1024
    guest.now = []
    assert poll() == []
    assert wait_refused(echo)
    assert wait_refused(privileged.host_port)


def test_poller_skips_a_vm_whose_guest_does_not_answer(services, store):
    class Broken:
        async def listeners(self, vm: Vm) -> list[tuple[str, int]]:
            raise BangerError("agent not up yet")

    vm = services.vms.create(
        services.vms.validate(VmCreate(name="auto", forward_ports="auto", no_start=True)),
        SilentProgress(),
    )
    store.set_vm_state(vm.id, vm.state.RUNNING)
    forwards = ForwardService(store, services.forwards.forwarder, Broken())
    loop = forwards.forwarder.loop
    asyncio.run_coroutine_threadsafe(forwards.poll_once(), loop).result(5)
    assert forwards.view(store.get_vm("auto")) == []
