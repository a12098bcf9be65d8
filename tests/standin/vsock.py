"""STAND-IN for Firecracker's vsock device: its host-side unix socket, as docs/vsock.md says.

Host-initiated connections: the host connects to ``uds_path`` and writes
``CONNECT <port>\\n``; Firecracker answers ``OK <host port>\\n`` and from then
on relays bytes to and from the guest's listener on ``<port>``, or closes the
connection when nothing in the guest listens there.

The guest side cannot be vsock here: QEMU's vsock needs vhost-vsock, which
this host lacks. So the stand-in gives its guest a virtio-serial port named
``banger.agent`` (what banger's agent uses under QEMU) and stands for the
agent's vsock listener on ``proto.AGENT_VSOCK_PORT`` with it: a CONNECT to
that port is accepted while the guest has the port open (QEMU reports that
as ``VSERPORT_CHANGE`` on a QMP socket of its own), and relayed over the
port's chardev; any other port is refused. The chardev takes one client,
so a newer connection supersedes the older one, as the agent itself does
with a newer vsock session. Guest-initiated connections
(``uds_path_<port>``) are not emulated: banger never makes them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from pathlib import Path

from banger.guest.proto import AGENT_VSOCK_PORT, SERIAL_PORT_NAME

PORT_ID = "agentport"
# Firecracker numbers the host's side of each connection from here up.
_FIRST_LOCAL_PORT = 1 << 30


def qemu_args(chardev: Path, events: Path) -> list[str]:
    """QEMU options for the guest's side: the serial port, and a QMP socket for its events."""
    return [
        "-device", "virtio-serial-device,max_ports=2",
        "-chardev", f"socket,id=agentdev,path={chardev},server=on,wait=off",
        "-device", f"virtserialport,id={PORT_ID},chardev=agentdev,name={SERIAL_PORT_NAME}",
        "-qmp", f"unix:{events},server=on,wait=off",
    ]  # fmt: skip


class VsockDevice:
    """The uds of one VM's vsock device, relaying port AGENT_VSOCK_PORT to the serial port."""

    def __init__(self, uds: Path, chardev: Path, events: Path) -> None:
        self.uds = uds
        self.chardev = chardev
        self.events = events
        self.guest_open = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[socket.socket, socket.socket] | None = None
        self._next_port = _FIRST_LOCAL_PORT
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def start(self) -> None:
        self.uds.unlink(missing_ok=True)
        # Bound relative to the working directory (the jail's root or the run
        # directory) where it lies there, as a chrooted Firecracker would.
        here = Path.cwd()
        self._listener.bind(self.uds.name if self.uds.parent == here else str(self.uds))
        self._listener.listen(8)
        threading.Thread(target=self._accept_loop, daemon=True).start()
        threading.Thread(target=self._watch_port, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.uds.unlink(missing_ok=True)

    # The guest's side: is the agent's port open?

    def _watch_port(self) -> None:
        qmp = _connect_retrying(self.events, 30)
        if qmp is None:
            return
        reader = qmp.makefile("rb")
        reader.readline()  # the greeting
        qmp.sendall(b'{"execute": "qmp_capabilities"}\n')
        for raw in reader:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("event") != "VSERPORT_CHANGE":
                continue
            data = message.get("data", {})
            if data.get("id") == PORT_ID:
                (self.guest_open.set if data.get("open") else self.guest_open.clear)()
                if not data.get("open"):
                    self._drop_current()  # the guest's listener went: so do its connections

    # The host's side.

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        port = _read_connect(conn)
        if port != AGENT_VSOCK_PORT or not self.guest_open.is_set():
            conn.close()  # Firecracker closes a connection the guest reset
            return
        guest = _connect_retrying(self.chardev, 0)
        if guest is None:
            conn.close()
            return
        with self._lock:
            local = self._next_port
            self._next_port += 1
        self._drop_current()
        with self._lock:
            self._current = (conn, guest)
        conn.sendall(f"OK {local}\n".encode())
        _relay(conn, guest)
        with self._lock:
            if self._current == (conn, guest):
                self._current = None
        for end in (conn, guest):
            end.close()

    def _drop_current(self) -> None:
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            for end in current:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def _read_connect(conn: socket.socket) -> int | None:
    """The port of a ``CONNECT <port>\\n`` line, or None for anything else."""
    conn.settimeout(10)
    line = b""
    try:
        while not line.endswith(b"\n") and len(line) < 64:
            chunk = conn.recv(1)
            if not chunk:
                return None
            line += chunk
    except OSError:
        return None
    conn.settimeout(None)
    words = line.decode(errors="replace").split()
    if len(words) == 2 and words[0] == "CONNECT" and words[1].isdigit():
        return int(words[1])
    return None


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways until either side closes."""
    peers = {a: b, b: a}
    while True:
        try:
            ready, _, _ = select.select(list(peers), [], [])
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)
        except OSError:
            return


def _connect_retrying(path: Path, timeout: float) -> socket.socket | None:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path.name if path.parent == Path.cwd() else str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
