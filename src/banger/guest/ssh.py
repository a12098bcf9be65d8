"""SSH keys, pinned host keys and the daemon's own SSH connections to guests.

banger holds one client key per user and gives every VM its own host key,
generated on the host and pinned in a per-VM known_hosts file, so no
connection ever asks to trust a key on first use. The OpenSSH command line
people get (`banger vm ssh`) is built by ``banger.api.ssh``, which the CLI
may import.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger import proc
from banger.errors import VmmError

log = logging.getLogger("banger.guest")


def ensure_user_key(ssh_dir: Path) -> Path:
    """banger's own client key (created once); returns the private key's path."""
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = ssh_dir / "id_ed25519.tmp"
        for stale in (tmp, tmp.with_suffix(".tmp.pub")):
            stale.unlink(missing_ok=True)
        proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f", tmp])
        tmp.with_suffix(".tmp.pub").rename(key.with_suffix(".pub"))
        tmp.rename(key)
    return key


def make_host_key(key: Path, comment: str) -> tuple[bytes, str]:
    """Generate a VM's ed25519 host key at ``key`` (and ``key``.pub); return (private, public)."""
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key])
    return key.read_bytes(), Path(f"{key}.pub").read_text().strip()


def write_known_hosts(path: Path, alias: str, public_key: str) -> None:
    kind, blob = public_key.split()[:2]
    path.write_text(f"{alias} {kind} {blob}\n")


@dataclass(frozen=True)
class GuestResult:
    exit_status: int
    stdout: str
    stderr: str


def _connect(host: str, identity: Path, host_key: str, timeout: float) -> Any:
    """An asyncssh connection as root, trusting only the VM's pinned host key."""
    import asyncssh

    return asyncssh.connect(
        host,
        username="root",
        client_keys=[str(identity)],
        known_hosts=([asyncssh.import_public_key(host_key)], [], []),
        connect_timeout=timeout,
        agent_path=None,
    )


async def _run(
    host: str, identity: Path, host_key: str, command: str, timeout: float
) -> GuestResult:
    async with _connect(host, identity, host_key, timeout) as conn:
        result = await conn.run(command, check=False, timeout=timeout)
        return GuestResult(
            exit_status=result.exit_status if result.exit_status is not None else 255,
            stdout=str(result.stdout or ""),
            stderr=str(result.stderr or ""),
        )


def run_in_guest(
    host: str, identity: Path, host_key: str, command: str, *, timeout: float = 30
) -> GuestResult:
    """Run a shell command in the guest as root over SSH, with the pinned host key."""
    import asyncssh

    try:
        return asyncio.run(_run(host, identity, host_key, command, timeout))
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise VmmError(
            f"cannot reach the guest at {host} over SSH: {exc or type(exc).__name__}",
            hint="check `banger vm health` and `banger vm logs`",
        ) from exc


async def _capture(
    host: str, identity: Path, host_key: str, command: str, out: Path, timeout: float
) -> GuestResult:
    async with _connect(host, identity, host_key, 30) as conn:
        with out.open("wb") as sink:
            result = await conn.run(
                command, check=False, timeout=timeout, stdout=sink, encoding=None
            )
        stderr = result.stderr or b""
        return GuestResult(
            exit_status=result.exit_status if result.exit_status is not None else 255,
            stdout="",
            stderr=stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr),
        )


def capture_from_guest(
    host: str, identity: Path, host_key: str, command: str, out: Path, *, timeout: float = 3600
) -> GuestResult:
    """Run a command in the guest and stream its (binary) stdout into ``out``."""
    import asyncssh

    try:
        return asyncio.run(_capture(host, identity, host_key, command, out, timeout))
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise VmmError(
            f"cannot read from the guest at {host} over SSH: {exc or type(exc).__name__}",
            hint="check `banger vm health`",
        ) from exc


async def _try_ssh(host: str, identity: Path, host_key: str, timeout: float) -> bool:
    import asyncssh

    try:
        result = await _run(host, identity, host_key, "true", timeout)
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        log.debug("ssh to %s not ready: %s", host, exc)
        return False
    return result.exit_status == 0


def wait_for_ssh(
    host: str,
    identity: Path,
    host_key: str,
    *,
    timeout: float,
    alive: Callable[[], bool],
    what: str,
) -> float:
    """Wait until the guest runs a command over SSH with its pinned key; return seconds."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise VmmError(
                f"{what} stopped while booting",
                hint="see its console with `banger vm logs`, or the tail printed above",
            )
        if asyncio.run(_try_ssh(host, identity, host_key, timeout=5)):
            return time.monotonic() - start
        time.sleep(0.5)
    raise VmmError(
        f"{what} did not accept SSH within {timeout:.0f}s",
        hint="the guest may still be booting under software emulation; see `banger vm logs`",
    )


def ssh_banner(host: str, port: int = 22, timeout: float = 2.0) -> bool:
    """Whether an SSH server answers on ``host:port`` with its version line."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float, what: str) -> float:
    """Wait until an SSH server greets on ``host:port``; return the seconds it took.

    Cheaper than a login (no handshake), for a guest already known to run.
    """
    start = time.monotonic()
    while not ssh_banner(host, port):
        if time.monotonic() - start > timeout:
            raise VmmError(
                f"{what} runs, but its SSH server did not answer within {timeout:.0f}s",
                hint="the image's init may still be starting it; see `banger vm logs`",
            )
        time.sleep(0.2)
    return time.monotonic() - start
