"""Finding banger-helper, or starting it where banger itself runs as root.

On a user's host the helper runs as root, started by hand or by a service
manager. Where banger already runs as root (CI, containers) bangerd starts
one itself, still behind its socket, so the privilege boundary is exercised
everywhere; and stops it again when the daemon stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from banger import proc, rundir
from banger.config import Settings
from banger.errors import BangerError, HelperError
from banger.helper_client.client import REQUIRED_VERBS, HelperClient

log = logging.getLogger("banger.helper")

START_TIMEOUT = 5.0
# Helpers this process started; held so they are not reported as leaked
# children when the Popen objects would otherwise be collected.
_started: list[subprocess.Popen[bytes]] = []
# Set once this daemon stopped its helper, so no late call starts another.
_stopped = threading.Event()


def helper_argv(settings: Settings, uid: int) -> list[str]:
    """How to start the helper for ``uid``: the console script beside this Python."""
    beside = Path(sys.executable).parent / "banger-helper"
    found = str(beside) if beside.is_file() else proc.which("banger-helper")
    base = [found] if found else [sys.executable, "-m", "banger.helper"]
    argv = [
        *base,
        "--socket",
        str(settings.helper_socket_path),
        "--owner-uid",
        str(uid),
        "--allowed-dir",
        str(settings.home),
        "--state-dir",
        str(settings.runtime_dir / "helper-state"),
    ]
    # The helper runs only the Firecracker and jailer named at its start.
    firecracker, jailer = settings.firecracker_binaries()
    if firecracker is not None and jailer is not None:
        argv += ["--firecracker", str(firecracker), "--jailer", str(jailer)]
    return argv


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
            hint="stop it (`sudo kill` the banger-helper process) and start this banger's:"
            f" `sudo banger-helper --socket {settings.helper_socket_path} --owner-uid"
            f" {os.getuid()} --allowed-dir {settings.home}`",
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
            hint="start it as root: "
            f"`sudo banger-helper --socket {settings.helper_socket_path} "
            f"--owner-uid {os.getuid()} --allowed-dir {settings.home}`",
        )
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    # Before the helper makes the socket's directory (0755) itself.
    rundir.ensure_private_dir(settings.runtime_dir)
    logfile = settings.log_dir / "helper.log"
    argv = helper_argv(settings, os.getuid())
    log.info("starting banger-helper on %s", settings.helper_socket_path)
    child = proc.spawn(argv, stdout=logfile)
    _started.append(child)
    # Recorded so that `banger daemon stop` stops what a daemon started, even a
    # daemon that crashed since; a systemd-managed helper has no such file.
    rundir.write_pidfile(_pidfile(settings), child.pid)
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


def _pidfile(settings: Settings) -> Path:
    return settings.runtime_dir / "helper.pid"


def connect_helper(settings: Settings) -> HelperClient:
    """The daemon's helper client; where banger runs as root, the helper is started now.

    A helper that cannot be reached is not fatal here: the daemon still
    serves lists and shows, and each VM operation reports the helper's error
    with its hint.
    """
    if os.geteuid() != 0:
        return HelperClient(settings.helper_socket_path)
    client = HelperClient(settings.helper_socket_path, revive=_reviver(settings))
    try:
        ensure_helper(settings)
    except BangerError as exc:
        log.warning("banger-helper: %s", exc.message)
    return client


def _reviver(settings: Settings) -> Callable[[], None]:
    """Start a helper again when the one this daemon started has died (killed, crashed).

    Without it every later VM command, and the undo of the one that was
    running, would fail until the daemon restarts, leaving taps behind.
    """
    lock = threading.Lock()

    def revive() -> None:
        with lock:  # one restart for all the threads that found it gone
            if _stopped.is_set():
                return  # the daemon is stopping: its helper stays stopped
            for child in list(_started):
                if child.poll() is not None:  # reap it: a zombie is no helper
                    _started.remove(child)
            log.warning("banger-helper is gone; starting it again")
            ensure_helper(settings)

    return revive


def stop_started_helper(settings: Settings, timeout: float = START_TIMEOUT) -> bool:
    """Stop the helper a daemon of this user started (never an installed one); True if done."""
    _stopped.set()
    pidfile = _pidfile(settings)
    try:
        recorded = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    serving = _peer_pid(settings.helper_socket_path)
    pidfile.unlink(missing_ok=True)
    if serving is None or serving != recorded:
        return False  # gone already, or someone else's helper serves the socket now
    log.info("stopping banger-helper (pid %d), which this daemon started", serving)
    with contextlib.suppress(ProcessLookupError):
        os.kill(serving, signal.SIGTERM)
    for child in _started:
        if child.pid == serving:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _peer_pid(settings.helper_socket_path) is not None:
        time.sleep(0.05)
    return True
