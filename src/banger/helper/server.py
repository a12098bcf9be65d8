"""The helper's wire protocol and socket server.

Newline-delimited JSON over a unix stream socket, one request per line::

    {"id": 1, "verb": "tap_create", "args": {"name": "bgt1", ...}}
    {"id": 1, "ok": true, "result": {...}}
    {"id": 1, "ok": false, "error": {"code": "invalid", "message": "...", "hint": "..."}}

Every connection's caller is identified by SO_PEERCRED; only root and the
owner uid are served. Standard library only: this runs as root.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import stat
import struct
from pathlib import Path
from typing import Any

from banger.helper import verbs
from banger.helper.errors import Conflict, Failure, HostError, Refused, UserError
from banger.helper.validate import Policy

log = logging.getLogger("banger.helper")

# A request is a few hundred bytes; anything this long is a confused or hostile peer.
MAX_LINE = 1 << 20
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


def respond(policy: Policy, line: bytes, uid: int) -> dict[str, Any]:
    """Answer one request line; never raises. Logs one line per call."""
    rid: int | str | None = None
    verb: object = None
    args: object = None
    try:
        request = _parse(line)
        verb, args = request.get("verb"), request.get("args")
        rid = _request_id(request)
        result = verbs.dispatch(policy, verb, args)
    except Failure as err:
        log.info("uid=%d %s %s -> %s: %s", uid, verb, _short(args), err.code, err.message)
        return {"id": rid, "ok": False, "error": err.to_dict()}
    except Exception as exc:
        log.exception("uid=%d %s %s -> crashed", uid, verb, _short(args))
        crash = Failure(f"the helper failed on {verb}: {exc}", hint="see the helper's log")
        return {"id": rid, "ok": False, "error": crash.to_dict()}
    log.info("uid=%d %s %s -> ok %s", uid, verb, _short(args), _short(result))
    return {"id": rid, "ok": True, "result": result}


class _Handler(socketserver.StreamRequestHandler):
    server: HelperServer
    # An idle connection holds a thread; callers connect per call anyway.
    timeout = 600

    def _send(self, reply: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(reply).encode() + b"\n")
        self.wfile.flush()

    def _hang_up(self) -> None:
        # Closing with unread input makes the peer's next read fail with
        # ECONNRESET instead of a clean end; drain a little first, time-boxed.
        try:
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(1)
            for _ in range(16):
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
            self._serve(policy, uid)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("uid=%d hung up mid-reply", uid)
        except TimeoutError:
            log.debug("uid=%d stayed idle too long; closing", uid)

    def _serve(self, policy: Policy, uid: int) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                err = UserError(f"request longer than {MAX_LINE} bytes; closing")
                self._send({"id": None, "ok": False, "error": err.to_dict()})
                self._hang_up()
                return
            if line.strip():
                self._send(respond(policy, line, uid))


class HelperServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    # A unix socket refuses connects (EAGAIN) once the backlog is full, and
    # bangerd calls from many threads at once.
    request_queue_size = 128

    def __init__(self, path: Path, policy: Policy) -> None:
        self.policy = policy
        self.path = path
        super().__init__(str(path), _Handler)
        # The file's inode, to recognise our socket at shutdown (fstat on the
        # socket itself reports sockfs, not the file).
        self.inode = path.lstat().st_ino


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


def bind(path: Path, policy: Policy) -> HelperServer:
    """Listen on ``path``: only its owner (and root) may connect, as far as modes go."""
    if len(os.fsencode(path)) > 107:
        raise UserError(f"socket path {path} is longer than a unix socket allows (107 bytes)")
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _remove_stale(path)
    # No window where the socket exists with looser permissions.
    old = os.umask(0o177)
    try:
        server = HelperServer(path, policy)
    finally:
        os.umask(old)
    try:
        if os.geteuid() == 0:
            os.chown(path, policy.owner_uid, -1)
        os.chmod(path, 0o600)
    except OSError:
        server.server_close()
        path.unlink(missing_ok=True)
        raise
    return server


def unlink_if_ours(server: HelperServer) -> None:
    """Remove the socket file unless another helper has since replaced it."""
    try:
        if server.path.lstat().st_ino == server.inode:
            server.path.unlink()
    except FileNotFoundError:
        pass
