"""A small QMP client: QEMU's JSON control protocol over its unix socket.

One connection per use (``with Qmp.connect(path) as qmp:``): QEMU greets,
banger negotiates capabilities, then sends commands one at a time and reads
lines until the answer to that command arrives; events that come in
between are kept in ``events`` for whoever waits for one (``wait_event``).
Descriptors go to QEMU with a command as SCM_RIGHTS ancillary data, which is
how a snapshot's memory file reaches ``migrate`` without a shell
(``getfd`` + ``fd:NAME``). Every failure is a ``VmmError`` naming the VM.
"""

from __future__ import annotations

import array
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from banger.errors import VmmError

log = logging.getLogger("banger.vmm")

DEFAULT_TIMEOUT = 10.0
# sun_path is 108 bytes with its terminating NUL.
_MAX_SOCKET_PATH = 107


class QmpError(VmmError):
    """QEMU answered a command with an error (its ``class`` and ``desc``)."""

    def __init__(self, vm: str, command: str, klass: str, desc: str) -> None:
        super().__init__(
            f"VM {vm!r}: QEMU refused {command}: {desc}",
            hint="see the VM's console with `banger vm logs NAME`",
        )
        self.klass = klass
        self.desc = desc


class Qmp:
    """One negotiated QMP session; use ``Qmp.connect`` as a context manager."""

    def __init__(self, sock: socket.socket, *, vm: str, timeout: float) -> None:
        self._sock = sock
        self._buffer = b""
        self.vm = vm
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] = {}

    @classmethod
    def connect(cls, path: Path, *, vm: str = "", timeout: float = DEFAULT_TIMEOUT) -> Self:
        """Connect to ``path`` and leave capabilities negotiation done."""
        vm = vm or path.parent.name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            _connect(sock, path)
        except OSError as exc:
            sock.close()
            raise VmmError(
                f"VM {vm!r}: QEMU's control socket {path} does not answer: {exc.strerror or exc}",
                hint="the VM may have stopped; see `banger vm show NAME`",
            ) from exc
        qmp = cls(sock, vm=vm, timeout=timeout)
        try:
            qmp.greeting = qmp._read(time.monotonic() + timeout)
            if "QMP" not in qmp.greeting:
                raise VmmError(f"VM {vm!r}: {path} does not speak QMP")
            qmp.execute("qmp_capabilities")
        except BaseException:
            sock.close()
            raise
        return qmp

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        fds: Sequence[int] = (),
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` and return its ``return`` value; QmpError when QEMU refuses."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        log.debug("qmp %s: %s", self.vm, data.decode().strip())
        try:
            if fds:
                rights = array.array("i", fds).tobytes()
                self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
            else:
                self._sock.sendall(data)
        except OSError as exc:
            raise self._gone(command, exc) from exc
        while True:
            reply = self._read(deadline, command)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                err = reply["error"]
                raise QmpError(self.vm, command, str(err.get("class")), str(err.get("desc")))
            if "return" in reply:
                return reply["return"]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The first event ``name`` (already received or still to come)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("event") == name:
                    return self.events.pop(index)
            reply = self._read(deadline, f"the {name} event")
            if "event" in reply:
                self.events.append(reply)

    def status(self) -> str:
        """QEMU's run state: running, paused, inmigrate, postmigrate, shutdown..."""
        return str(self.execute("query-status")["status"])

    def _read(self, deadline: float, waiting_for: str = "QEMU's greeting") -> dict[str, Any]:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VmmError(
                    f"VM {self.vm!r}: QEMU did not answer {waiting_for} in time",
                    hint="the host may be overloaded; try again",
                )
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise self._gone(waiting_for, exc) from exc
            if not chunk:
                raise self._gone(waiting_for, None)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VmmError(f"VM {self.vm!r}: QEMU sent a line that is not JSON") from exc
        if not isinstance(parsed, dict):
            raise VmmError(f"VM {self.vm!r}: QEMU sent {line[:80]!r}, not a QMP message")
        return parsed

    def _gone(self, waiting_for: str, exc: OSError | None) -> VmmError:
        why = f": {exc.strerror or exc}" if exc is not None else ""
        return VmmError(
            f"VM {self.vm!r}: QEMU closed its control socket during {waiting_for}{why}",
            hint="see the VM's console with `banger vm logs NAME`",
        )


def _connect(sock: socket.socket, path: Path) -> None:
    address = str(path.absolute())
    if len(address.encode()) <= _MAX_SOCKET_PATH:
        sock.connect(address)
        return
    # Deeper than sun_path reaches: through a descriptor of its directory.
    dir_fd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{path.name}")
    finally:
        os.close(dir_fd)
