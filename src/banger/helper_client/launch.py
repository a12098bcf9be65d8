"""Finding banger-helper, or starting it where banger itself runs as root.

On a user's host the helper is a systemd service installed once with
``sudo banger system install``. Where banger already runs as root (CI,
containers) bangerd starts one itself, still behind its socket, so the
privilege boundary is exercised everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from banger import proc
from banger.config import Settings
from banger.errors import BangerError, HelperError
from banger.helper_client.client import REQUIRED_VERBS, HelperClient

log = logging.getLogger("banger.helper")

START_TIMEOUT = 5.0
# Helpers this process started; held so they are not reported as leaked
# children when the Popen objects would otherwise be collected.
_started: list[subprocess.Popen[bytes]] = []


def helper_argv(settings: Settings, uid: int) -> list[str]:
    """How to start the helper for ``uid``: the console script beside this Python."""
    beside = Path(sys.executable).parent / "banger-helper"
    found = str(beside) if beside.is_file() else proc.which("banger-helper")
    base = [found] if found else [sys.executable, "-m", "banger.helper"]
    return [
        *base,
        "--socket",
        str(settings.helper_socket_path),
        "--owner-uid",
        str(uid),
        "--allowed-dir",
        str(settings.home),
    ]


def _answers(client: HelperClient) -> bool:
    try:
        client.ping()
    except BangerError:
        return False
    return True


def _last_words(path: Path) -> str:
    """The helper's own fatal message from its log, else the log's last line."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    fatal = [line for line in lines if line.startswith("banger-helper:")]
    return (fatal or lines or [""])[-1].strip()


def _missing_verbs(client: HelperClient) -> set[str]:
    """Verbs this banger needs that the running helper (maybe an older one) lacks."""
    try:
        known = set(client.ping().get("verbs", ()))
    except BangerError:
        return set()
    return set(REQUIRED_VERBS) - known


def _peer_pid(socket_path: Path) -> int | None:
    """The pid of whoever serves ``socket_path`` (SO_PEERCRED on a fresh connection)."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(socket_path))
        except OSError:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None


def _retire_stale(settings: Settings, client: HelperClient, missing: set[str]) -> None:
    """Stop a helper from an older banger so a current one can take its socket."""
    if os.geteuid() != 0:
        raise HelperError(
            "the running banger-helper is older than this banger (it lacks "
            + ", ".join(sorted(missing))
            + ")",
            hint="restart it: `sudo systemctl restart banger-helper`, or"
            " `sudo banger system install` again",
        )
    pid = _peer_pid(settings.helper_socket_path)
    log.warning("replacing an outdated banger-helper (pid %s) lacking %s", pid, sorted(missing))
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and _answers(client):
        time.sleep(0.05)


def ensure_helper(settings: Settings, timeout: float = START_TIMEOUT) -> HelperClient:
    """A client for a current helper that answers, starting one if banger runs as root."""
    client = HelperClient(settings.helper_socket_path)
    if _answers(client):
        missing = _missing_verbs(client)
        if not missing:
            return client
        _retire_stale(settings, client, missing)
    if os.geteuid() != 0:
        raise HelperError(
            f"banger-helper is not running (nothing answers on {settings.helper_socket_path})",
            hint="run `sudo banger system install` once, or start it as root: "
            f"`sudo banger-helper --socket {settings.helper_socket_path} "
            f"--owner-uid {os.getuid()} --allowed-dir {settings.home}`",
        )
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    logfile = settings.log_dir / "helper.log"
    argv = helper_argv(settings, os.getuid())
    log.info("starting banger-helper on %s", settings.helper_socket_path)
    child = proc.spawn(argv, stdout=logfile)
    _started.append(child)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Another daemon may have won a race to start one; any helper that answers will do.
        if _answers(client):
            return client
        if child.poll() is not None and not _answers(client):
            said = _last_words(logfile)
            raise HelperError(
                f"banger-helper exited with code {child.returncode} before answering"
                + (f" ({said})" if said else ""),
                hint=f"see {logfile}",
            )
        time.sleep(0.05)
    child.kill()
    child.wait()
    raise HelperError(
        f"banger-helper did not answer on {settings.helper_socket_path} within {timeout:.0f}s",
        hint=f"see {logfile}",
    )
