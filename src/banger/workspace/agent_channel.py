"""``GuestChannel`` through bangerd and banger's guest agent, for VMs whose agent answers.

The CLI never talks to the agent itself (it imports no ``banger.guest``): it
opens a websocket to the daemon (``banger.api.stream``), which relays to the
VM's agent link. Each started command is one websocket; a thread feeds its
stdin from a file descriptor and another writes its stdout and stderr to
theirs, so a pipeline (git's tar into the guest) runs at the speed of the
link with no buffer growing in between. Tar streams go through the agent's
own tar ops: nothing in the guest needs a ``tar`` binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from banger.api.stream import STDERR, STDIN, STDOUT, Refused, open_socket
from banger.errors import BangerError, DaemonUnavailable
from banger.workspace.channel import RunsToEnd, Stream

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

CHUNK = 64 << 10
# What a shell answers for a command it cannot run, and a timeout(1)'s code.
NOT_FOUND, NOT_EXECUTABLE, TIMED_OUT = 127, 126, 124


def _fd_of(stream: Stream, default: int) -> int:
    if stream is None:
        return default
    if isinstance(stream, int):
        return stream
    return stream.fileno()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def code_of(final: dict[str, Any]) -> int:
    """A shell's ``$?`` for the daemon's last word on an exec."""
    if final.get("exit") is not None:
        return int(final["exit"])
    if final.get("timed_out"):
        return TIMED_OUT
    return 128 + int(final.get("signal") or 0)


class AgentProcess:
    """A command (or a transfer) running in the guest through one websocket."""

    def __init__(
        self,
        ws: ClientConnection | None,
        *,
        stdin: Stream,
        stdout: Stream,
        stderr: Stream,
        what: str,
    ) -> None:
        self._ws = ws
        self._what = what
        self.stdin: IO[bytes] | None = None
        self.stdout: IO[bytes] | None = None
        self.final: dict[str, Any] = {}
        self._error: BangerError | None = None
        self._close_out: list[int] = []
        self._out = {STDOUT: self._sink(stdout, 1), STDERR: self._sink(stderr, 2)}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._feeder: threading.Thread | None = None
        if ws is None:  # nothing started: empty output, input goes nowhere
            self._close_sinks()
            if stdin == subprocess.PIPE:
                self.stdin = open(os.devnull, "wb")  # noqa: SIM115 - the caller closes it
            return
        if stdin == subprocess.DEVNULL:
            self.send_control({"eof": 0})
        else:
            self._feeder = threading.Thread(
                target=self._feed, args=(self._source(stdin),), daemon=True
            )
            self._feeder.start()
        self._reader.start()

    def _sink(self, stream: Stream, default: int) -> int:
        if stream == subprocess.PIPE and default == 1:
            r, w = os.pipe()
            self.stdout = os.fdopen(r, "rb")
            self._close_out.append(w)
            return w
        if stream == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_WRONLY)
        else:
            # Our own copy, as a child process gets: the caller may close theirs at once.
            fd = os.dup(_fd_of(stream, default))
        self._close_out.append(fd)
        return fd

    def _source(self, stream: Stream) -> int:
        if stream == subprocess.PIPE:
            r, w = os.pipe()
            self.stdin = os.fdopen(w, "wb")
            return r
        return os.dup(_fd_of(stream, 0))

    def _feed(self, fd: int) -> None:
        ws = self._ws
        assert ws is not None
        from websockets.exceptions import ConnectionClosed

        try:
            while data := os.read(fd, CHUNK):
                ws.send(bytes([STDIN]) + data)
            ws.send(json.dumps({"eof": 0}))
        except (OSError, ConnectionClosed):
            # The command ended (its end arrives through _read) or our own input broke.
            return
        finally:
            os.close(fd)

    def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        from websockets.exceptions import ConnectionClosed

        try:
            for message in ws:
                if isinstance(message, bytes):
                    fd = self._out.get(message[0])
                    if fd is not None:
                        _write_all(fd, message[1:])
                else:
                    self.final = json.loads(message)
        except BrokenPipeError:
            # Nobody reads our output any more: the command goes too, as in a pipeline.
            ws.close()
            self.final = {"signal": signal.SIGPIPE}
        except (ConnectionClosed, OSError) as exc:
            self._error = DaemonUnavailable(
                f"bangerd stopped answering during {self._what} ({exc})",
                hint="see `banger daemon status`; its log says why",
            )
        finally:
            self._close_sinks()

    def _close_sinks(self) -> None:
        for fd in self._close_out:
            os.close(fd)
        self._close_out = []

    def send_control(self, control: dict[str, Any]) -> None:
        """``{"signal": N}`` or ``{"resize": [rows, cols]}`` for the running command."""
        if self._ws is not None:
            from websockets.exceptions import ConnectionClosed

            # A command that ended meanwhile needs no signal.
            with contextlib.suppress(ConnectionClosed, OSError):
                self._ws.send(json.dumps(control))

    def wait(self) -> int:
        if self._ws is None:
            return code_of(self.final)
        self._reader.join()
        self._ws.close()
        if self._error is not None:
            raise self._error
        if "error" in self.final:
            raise Refused(self.final)
        if "ok" in self.final:
            return 0
        if not self.final:
            raise DaemonUnavailable(
                f"bangerd ended {self._what} without saying how it ended",
                hint="see the daemon's log (`banger daemon status` says where)",
            )
        return code_of(self.final)


def refused_process(
    exc: Refused, argv: Sequence[str], stdin: Stream, stdout: Stream, stderr: Stream
) -> AgentProcess:
    """A command the guest could not start, as a shell reports it: a line and 127 (or 126)."""
    process = AgentProcess(None, stdin=stdin, stdout=stdout, stderr=stderr, what=argv[0])
    _write_all(_fd_of(stderr, 2), f"banger: {exc.message}\n".encode())
    process.final = {"exit": NOT_FOUND if exc.errno == "ENOENT" else NOT_EXECUTABLE}
    return process


class AgentChannel(RunsToEnd):
    """``GuestChannel`` for VM ``vm`` through bangerd's /vms/NAME/exec/ws and /files/ws."""

    def __init__(self, socket_path: str, vm: str) -> None:
        self.socket_path = socket_path
        self.vm = vm

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
        pty: tuple[int, int] | None = None,
        timeout: float | None = None,
    ) -> AgentProcess:
        request: dict[str, Any] = {"argv": list(argv), "cwd": cwd, "env": dict(env or {})}
        if pty is not None:
            request["pty"] = {
                "rows": pty[0],
                "cols": pty[1],
                "term": os.environ.get("TERM", "xterm"),
            }
        if timeout is not None:
            request["timeout"] = timeout
        try:
            ws, _ = open_socket(self.socket_path, f"/vms/{self.vm}/exec/ws", request)
        except Refused as exc:
            if exc.errno in ("ENOENT", "EACCES"):
                return refused_process(exc, argv, stdin, stdout, stderr)
            raise
        return AgentProcess(ws, stdin=stdin, stdout=stdout, stderr=stderr, what=argv[0])

    def _transfer(self, request: dict[str, Any], *, stdin: Stream, stdout: Stream) -> AgentProcess:
        ws, _ = open_socket(self.socket_path, f"/vms/{self.vm}/files/ws", request)
        return AgentProcess(
            ws, stdin=stdin, stdout=stdout, stderr=sys.stderr.fileno(), what=request["op"]
        )

    def put_tar(self, guest_dir: str, source: Stream, *, stderr: Stream = None) -> AgentProcess:
        return self._transfer({"op": "tar_put", "dir": guest_dir}, stdin=source, stdout=None)

    def get_tar(
        self, guest_dir: str, names: Sequence[str], sink: Stream, *, stderr: Stream = None
    ) -> AgentProcess:
        return self._transfer(
            {"op": "tar_get", "dir": guest_dir, "names": list(names)},
            stdin=subprocess.DEVNULL,
            stdout=sink,
        )
