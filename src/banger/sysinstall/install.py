"""Writing, inspecting and removing a system install of banger (see ``units.py``).

Everything goes under ``root`` (``/`` normally; a temporary directory in
tests), and systemd is driven only where it runs: ``systemctl`` through
``banger.proc``, skipped with a sentence elsewhere. The helper runs as root
from the Python that runs this command, so that Python and banger's code must
be writable by root alone, or any user who can edit them owns the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger import __version__, proc
from banger.config import SYSTEM_CACHE_DIR, SYSTEM_HELPER_SOCKET, SYSTEM_HOME, SYSTEM_RUNTIME_DIR
from banger.errors import HostError, NotFound, UserError
from banger.sysinstall.units import (
    DAEMON_UNIT,
    ETC_DIR,
    HELPER_UNIT,
    METADATA,
    UNIT_DIR,
    Layout,
    render,
)

UNITS = (HELPER_UNIT, DAEMON_UNIT)


def owner_of(name: str | None) -> pwd.struct_passwd:
    """The install's owner: ``--owner``, else the user who ran sudo."""
    wanted = name or os.environ.get("SUDO_USER")
    if not wanted:
        raise UserError(
            "who should own banger? run through sudo as that user, or name them",
            hint="sudo banger system install --owner USER",
        )
    try:
        entry = pwd.getpwnam(wanted)
    except KeyError:
        raise NotFound(f"there is no user {wanted!r} on this host") from None
    if entry.pw_uid == 0:
        raise UserError(
            "bangerd must not run as root: the owner is the user who runs VMs",
            hint="sudo banger system install --owner USER (an ordinary account)",
        )
    return entry


def _executable(name: str) -> Path:
    beside = Path(sys.executable).parent / name
    found = beside if beside.is_file() else (Path(p) if (p := proc.which(name)) else None)
    if found is None:
        raise HostError(f"{name} is not installed beside this banger", hint="reinstall banger")
    return found


def _root_only(path: Path) -> None:
    """``path`` and every directory above it: owned by root, writable by nobody else."""
    here = Path(os.path.realpath(path))
    for part in (here, *here.parents):
        st = part.stat()
        if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise UserError(
                f"{part} is writable by a user other than root, and banger-helper would run"
                f" as root from {path}",
                hint="install banger where only root can change it (for example `sudo uv tool"
                " install` into /opt), then run `sudo banger system install` from there",
            )


def layout(owner: pwd.struct_passwd, root: Path, *, check_code: bool = True) -> Layout:
    helper, daemon = _executable("banger-helper"), _executable("bangerd")
    if check_code:
        import banger

        for path in (helper, Path(sys.executable), Path(banger.__file__).parent):
            _root_only(path)
    firecracker, jailer = proc.which("firecracker"), proc.which("jailer")
    return Layout(
        owner=owner.pw_name,
        uid=owner.pw_uid,
        gid=owner.pw_gid,
        helper_exe=helper,
        daemon_exe=daemon,
        root=root,
        firecracker=Path(firecracker) if firecracker else None,
        jailer=Path(jailer) if jailer else None,
    )


def _dir(path: Path, mode: int, uid: int, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise HostError(f"{path} is a symlink; refusing to install over it")
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temp, path)


def write(lay: Layout) -> dict[str, Any]:
    """Units, directories and metadata; returns the metadata written."""
    for path, text in render(lay).items():
        _write(path, text)
    _dir(lay.at(SYSTEM_HOME), 0o700, lay.uid, lay.gid)
    _dir(lay.at(SYSTEM_CACHE_DIR), 0o700, lay.uid, lay.gid)
    # systemd makes these itself on start (RuntimeDirectory=); made here too
    # so the layout can be checked where systemd does not run.
    _dir(lay.at(SYSTEM_RUNTIME_DIR.parent), 0o755, 0, 0)
    _dir(lay.at(SYSTEM_RUNTIME_DIR), 0o700, lay.uid, lay.gid)
    _dir(lay.at(SYSTEM_HELPER_SOCKET.parent), 0o755, 0, 0)
    meta = {
        "owner": lay.owner,
        "uid": lay.uid,
        "gid": lay.gid,
        "version": __version__,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "units": list(UNITS),
        "helper": str(lay.helper_exe),
        "daemon": str(lay.daemon_exe),
        "state_dir": str(SYSTEM_HOME),
        "cache_dir": str(SYSTEM_CACHE_DIR),
        "socket": str(SYSTEM_RUNTIME_DIR / "bangerd.sock"),
        "helper_socket": str(SYSTEM_HELPER_SOCKET),
    }
    _dir(lay.at(ETC_DIR), 0o755, 0, 0)
    _write(lay.at(METADATA), json.dumps(meta, indent=2) + "\n")
    return meta


def read_metadata(root: Path) -> dict[str, Any] | None:
    path = root / METADATA.relative_to("/")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HostError(f"cannot read {path}: {exc}", hint="sudo banger system install") from exc
    return data if isinstance(data, dict) else None


def remove(root: Path, *, purge: bool) -> list[str]:
    """Units and metadata (and with ``purge`` state, cache, sockets); what was removed."""
    removed = []
    targets = [root / (UNIT_DIR / unit).relative_to("/") for unit in UNITS]
    targets.append(root / METADATA.relative_to("/"))
    if purge:
        for path in (SYSTEM_HOME, SYSTEM_CACHE_DIR, SYSTEM_RUNTIME_DIR.parent, ETC_DIR):
            targets.append(root / path.relative_to("/"))
    for path in targets:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            continue
        removed.append(str(path))
    with contextlib.suppress(OSError):
        (root / ETC_DIR.relative_to("/")).rmdir()  # only if empty
    return removed


@dataclass(frozen=True)
class Systemd:
    """systemctl where systemd runs this host; a sentence instead where it does not."""

    root: Path

    @property
    def running(self) -> bool:
        return self.root == Path("/") and Path("/run/systemd/system").is_dir()

    def why_not(self) -> str:
        if self.root != Path("/"):
            return f"installed under {self.root}, not this host's /: systemd left alone"
        return "systemd is not running on this host: the units are written but not started"

    def run(self, *args: str) -> None:
        proc.run(["systemctl", *args], timeout=120)

    def state(self, unit: str) -> str:
        if not self.running:
            return "unknown (no systemd)"
        result = proc.run(["systemctl", "is-active", unit], check=False, timeout=30)
        return result.stdout.decode(errors="replace").strip() or "unknown"


def socket_facts(path: Path) -> dict[str, Any]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return {"path": str(path), "exists": False}
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return {
        "path": str(path),
        "exists": stat.S_ISSOCK(st.st_mode),
        "owner": owner,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
    }
