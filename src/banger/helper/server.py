"""The helper's wire protocol and socket server.

Newline-delimited JSON over a unix stream socket, one request per line::

    {"id": 1, "verb": "tap_create", "args": {"name": "bgt1", ...}}
    {"id": 1, "ok": true, "result": {...}}
    {"id": 1, "ok": false, "error": {"code": "invalid", "message": "...", "hint": "..."}}

Every connection's caller is identified by SO_PEERCRED; only root and the
owner uid are served. Standard library only: this runs as root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import socketserver
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any

from banger.helper import verbs
from banger.helper.errors import Conflict, Failure, HostError, Refused, UserError
from banger.helper.validate import Policy

log = logging.getLogger("banger.helper")

# A request is a few hundred bytes; anything this long is a confused or hostile peer.
MAX_LINE = 1 << 20
# Callers connect per call, so a connection is short; these bound what idle or
# trickling peers can hold: a thread each, at most MAX_CONNECTIONS of them.
MAX_CONNECTIONS = 32
IDLE_TIMEOUT = 30.0
LINE_TIMEOUT = 10.0
HANG_UP_TIMEOUT = 1.0
_REQUEST_KEYS = frozenset({"id", "verb", "args"})
_EXAMPLE = '{"id": 1, "verb": "ping", "args": {}}'


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    """The (pid, uid) of the process at the other end of a unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


def _short(value: object, limit: int = 400) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except RecursionError as exc:
        raise UserError("request is nested too deeply", hint=f"send {_EXAMPLE}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"request is not JSON: {exc}", hint=f"send one object per line: {_EXAMPLE}"
        ) from exc
    if not isinstance(request, dict):
        raise UserError("request must be a JSON object", hint=f"for example {_EXAMPLE}")
    extra = sorted(set(request) - _REQUEST_KEYS)
    if extra:
        raise UserError(
            f"request has unknown field(s) {', '.join(extra)}", hint=f"fields: {_EXAMPLE}"
        )
    return request


def _request_id(request: dict[str, Any]) -> int | str | None:
    rid = request.get("id")
    if rid is None or (isinstance(rid, int | str) and not isinstance(rid, bool)):
        return rid
    raise UserError("request id must be an integer or a string")


def respond(policy: Policy, line: bytes, uid: int, pid: int = 0) -> dict[str, Any]:
    """``answer`` without descriptors: any a verb opened are closed."""
    reply, fds = answer(policy, line, uid, pid)
    for fd in fds:
        os.close(fd)
    return reply


def _take_fds(result: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """A result's descriptors (``verbs.PassFd``) replaced by their index in the message."""
    fds: list[int] = []
    clean: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, verbs.PassFd):
            clean[key] = {"passed_fd": len(fds)}
            fds.append(int(value))
        else:
            clean[key] = value
    return clean, fds


def answer(policy: Policy, line: bytes, uid: int, pid: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Answer one request line, with the descriptors to pass; never raises. Logs one line.

    Everything a caller sent is logged JSON-quoted (``_short``), so a verb
    holding a newline cannot forge a log line of its own.
    """
    rid: int | str | None = None
    verb: object = None
    args: object = None
    who = f"uid={uid} pid={pid}"
    try:
        request = _parse(line)
        verb, args = request.get("verb"), request.get("args")
        rid = _request_id(request)
        result, fds = _take_fds(verbs.dispatch(policy.for_caller(uid), verb, args))
    except Failure as err:
        log.info(
            "%s %s %s -> refused %s: %s",
            who,
            _short(verb),
            _short(args),
            err.code,
            _short(err.message),
        )
        return {"id": rid, "ok": False, "error": err.to_dict()}, []
    except Exception as exc:
        log.exception("%s %s %s -> crashed", who, _short(verb), _short(args))
        crash = Failure(
            f"the helper failed on {_short(verb, 60)}: {exc}", hint="see the helper's log"
        )
        return {"id": rid, "ok": False, "error": crash.to_dict()}, []
    log.info("%s %s %s -> ok %s", who, _short(verb), _short(args), _short(result))
    return {"id": rid, "ok": True, "result": result}, fds


class _Handler(socketserver.BaseRequestHandler):
    server: HelperServer
    request: socket.socket

    def _send(self, reply: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(reply).encode() + b"\n"
        if not fds:
            self.request.sendall(data)
            return
        try:
            # The descriptors ride on the first bytes of the reply line.
            sent = socket.send_fds(self.request, [data], fds)
            self.request.sendall(data[sent:])
        finally:
            for fd in fds:
                os.close(fd)

    def _hang_up(self) -> None:
        # Closing with unread input makes the peer's next read fail with
        # ECONNRESET instead of a clean end; drain a little first, time-boxed
        # as a whole so a trickling peer cannot stretch it.
        deadline = time.monotonic() + HANG_UP_TIMEOUT
        try:
            self.request.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.request.settimeout(left)
                if not self.request.recv(65536):
                    break
        except OSError:
            pass

    def handle(self) -> None:
        policy = self.server.policy
        pid, uid = peer_uid(self.request)
        if uid not in (0, policy.owner_uid):
            log.warning("refused a connection from uid %d (pid %d)", uid, pid)
            err = Refused(
                f"uid {uid} may not use this helper; it serves uid {policy.owner_uid}",
                hint="run banger as the user the helper was installed for",
            )
            self._send({"id": None, "ok": False, "error": err.to_dict()})
            self._hang_up()
            return
        try:
            self._serve(policy, uid, pid)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("uid=%d pid=%d hung up mid-reply", uid, pid)
        except TimeoutError:
            log.info("uid=%d pid=%d idle or too slow; closing", uid, pid)

    def _serve(self, policy: Policy, uid: int, pid: int) -> None:
        reader = _LineReader(self.request)
        while True:
            line = reader.next_line()
            if line is None:
                return
            if len(line) > MAX_LINE:
                log.info("uid=%d pid=%d sent a request over %d bytes; closing", uid, pid, MAX_LINE)
                err = UserError(f"request longer than {MAX_LINE} bytes; closing")
                self._send({"id": None, "ok": False, "error": err.to_dict()})
                self._hang_up()
                return
            if line.strip():
                self._send(*answer(policy, line, uid, pid))


class _LineReader:
    """Lines from a socket, each within LINE_TIMEOUT of its first byte.

    A per-recv timeout alone lets a peer send one byte every few seconds and
    keep a thread forever (slow-loris); here a line has a deadline as a whole,
    and the wait for the next line is IDLE_TIMEOUT.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next_line(self) -> bytes | None:
        deadline = time.monotonic() + (LINE_TIMEOUT if self.buffer else IDLE_TIMEOUT)
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
                return line
            if len(self.buffer) > MAX_LINE:
                return self.buffer
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest or None
            if not self.buffer:
                deadline = time.monotonic() + LINE_TIMEOUT
            self.buffer += chunk


class HelperServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    # A unix socket refuses connects (EAGAIN) once the backlog is full, and
    # bangerd calls from many threads at once.
    request_queue_size = 128

    def __init__(self, address: str, path: Path, policy: Policy) -> None:
        self.policy = policy
        self.path = path
        # The socket file's inode, to recognise it at shutdown; set by bind().
        self.inode = 0
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, but never more than MAX_CONNECTIONS:
        # past that a caller is told to retry instead of getting a thread.
        if not self.slots.acquire(blocking=False):
            log.warning("more than %d connections at once; refusing one", MAX_CONNECTIONS)
            err = Failure("the helper is busy (too many connections); retry", hint=None)
            try:
                request.settimeout(1)
                request.sendall(
                    json.dumps({"id": None, "ok": False, "error": err.to_dict()}).encode() + b"\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise HostError(
            f"{path} exists and is not a socket", hint="remove it or choose another --socket"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        raise HostError(f"cannot tell whether {path} is in use: {exc}") from exc
    finally:
        probe.close()
    raise Conflict(
        f"another helper already answers on {path}",
        hint="stop the helper that runs, or use another --socket",
    )


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise HostError(
            f"cannot use {path} for the helper socket: {exc.strerror}"
            + (" (it is a symlink)" if path.is_symlink() else ""),
            hint="choose a --socket in a real directory, such as /run/banger/helper/helper.sock",
        ) from exc


def bind(path: Path, policy: Policy) -> HelperServer:
    """Listen on ``path``: only its owner (and root) may connect, as far as modes go.

    The socket is never chowned or chmodded by path where others could
    interfere: it is bound inside a fresh directory only this process can
    write (reached through its descriptor), given its owner and mode there,
    then renamed into place, which replaces a planted symlink instead of
    following it. Whoever can write the socket's directory can still remove
    the socket, but can no longer make root change any other file.
    """
    if len(os.fsencode(path)) > 107:
        raise UserError(f"socket path {path} is longer than a unix socket allows (107 bytes)")
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _remove_stale(path)
    parent_fd = _open_dir(path.parent)
    try:
        return _bind_via_private_dir(path, parent_fd, policy)
    finally:
        os.close(parent_fd)


def _bind_via_private_dir(path: Path, parent_fd: int, policy: Policy) -> HelperServer:
    private = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    os.mkdir(private, 0o700, dir_fd=parent_fd)
    try:
        private_fd = os.open(private, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        os.rmdir(private, dir_fd=parent_fd)
        raise
    try:
        st = os.fstat(private_fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise HostError(f"the staging directory in {path.parent} was swapped; not binding")
        # No window where the socket exists with looser permissions.
        old = os.umask(0o177)
        try:
            server = HelperServer(f"/proc/self/fd/{private_fd}/s", path, policy)
        finally:
            os.umask(old)
        try:
            if os.geteuid() == 0:
                os.chown("s", policy.owner_uid, -1, dir_fd=private_fd, follow_symlinks=False)
            os.chmod("s", 0o600, dir_fd=private_fd)
            server.inode = os.stat("s", dir_fd=private_fd, follow_symlinks=False).st_ino
            os.rename("s", path.name, src_dir_fd=private_fd, dst_dir_fd=parent_fd)
        except OSError:
            server.server_close()
            raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink("s", dir_fd=private_fd)
        os.close(private_fd)
        with contextlib.suppress(OSError):
            os.rmdir(private, dir_fd=parent_fd)
    return server


def unlink_if_ours(server: HelperServer) -> None:
    """Remove the socket file unless another helper has since replaced it."""
    try:
        if server.path.lstat().st_ino == server.inode:
            server.path.unlink()
    except FileNotFoundError:
        pass
