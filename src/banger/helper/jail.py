"""Firecracker under its jailer: the argv (pure), the jail's contents, the record.

The helper (root) builds the jailer's command itself from validated values;
nothing of it comes from the caller. A jail is
``<jail_base>/firecracker/<id>/root`` (the jailer's layout); the VM's files
appear in it as hard links (a bind mount when the jail is on another
filesystem), never as copies, and the files the VMM writes are lent to the
jail's uid for the VM's life. ``launched.json`` beside the root records what
the helper started; a kill only reaches a process that matches it.
Standard library only: this runs as root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from banger.helper import run
from banger.helper.errors import HostError

# The jailer insists the executable's name contains "firecracker"; the jail
# directory and the pid file are named after it (the default name here).
EXEC_NAME = "firecracker"
# The API socket, as the jailed Firecracker sees it (its root is the jail).
API_SOCK = "/api.sock"
RECORD = "launched.json"
# Guest memory plus what Firecracker itself needs.
MEMORY_HEADROOM_MIB = 256
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class JailSpec:
    id: str
    jailer: Path
    firecracker: Path
    jail_base: Path
    uid: int
    gid: int
    vcpus: int
    memory_mib: int

    @property
    def dir(self) -> Path:
        return self.jail_base / self.firecracker.name / self.id

    @property
    def pidfile(self) -> Path:
        return self.root / f"{self.firecracker.name}.pid"

    @property
    def root(self) -> Path:
        return self.dir / "root"


def jailer_argv(spec: JailSpec) -> list[str]:
    """The jailer's command for ``spec``: pure, touches nothing."""
    memory_bytes = (spec.memory_mib + MEMORY_HEADROOM_MIB) << 20
    return [
        str(spec.jailer),
        "--id", spec.id,
        "--exec-file", str(spec.firecracker),
        "--uid", str(spec.uid),
        "--gid", str(spec.gid),
        "--chroot-base-dir", str(spec.jail_base),
        "--cgroup-version", "2",
        # vCPUs' worth of CPU time per period, and a memory ceiling: a runaway
        # guest slows itself, not the host.
        "--cgroup", f"cpu.max={spec.vcpus * CPU_PERIOD_US} {CPU_PERIOD_US}",
        "--cgroup", f"memory.max={memory_bytes}",
        "--new-pid-ns",
        "--",
        "--api-sock", API_SOCK,
    ]  # fmt: skip


def _place(source: Path, target: Path) -> str:
    """``source`` visible at ``target`` without a copy: "link" or "bind"."""
    try:
        os.link(source, target, follow_symlinks=False)
        return "link"
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise HostError(f"cannot link {source} into the jail: {exc.strerror}") from exc
    target.touch(mode=0o600)
    run.run(["mount", "--bind", str(source), str(target)])
    return "bind"


def populate(
    spec: JailSpec, files: list[tuple[Path, bool]], owner_uid: int
) -> tuple[dict[str, str], list[str]]:
    """Put ``files`` (path, writable) in the jail; (host path -> jail path, bind mounts)."""
    spec.root.mkdir(parents=True, exist_ok=True)
    os.chown(spec.root, spec.uid, spec.gid)
    mapping: dict[str, str] = {}
    binds: list[str] = []
    for index, (source, writable) in enumerate(files):
        name = f"{index}-{source.name}"
        target = spec.root / name
        if _place(source, target) == "bind":
            binds.append(str(target))
        if writable:
            # Lent to the jail's uid while the VM runs; given back at kill.
            os.chown(source, spec.uid, spec.gid)
        mapping[str(source)] = f"/{name}"
    return mapping, binds


_TUNSETIFF = 0x400454CA
_TUNSETOWNER = 0x400454CC
_TUNSETGROUP = 0x400454CE
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000


def set_tap_owner(name: str, uid: int, gid: int) -> None:
    """Let ``uid`` open the persistent tap ``name`` (the jailed VMM is not its creator)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise HostError(f"cannot open /dev/net/tun: {exc.strerror}") from exc
    try:
        ifr = struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI)
        fcntl.ioctl(fd, _TUNSETIFF, ifr)
        fcntl.ioctl(fd, _TUNSETOWNER, uid)
        fcntl.ioctl(fd, _TUNSETGROUP, gid)
    except OSError as exc:
        raise HostError(f"cannot give tap {name} to uid {uid}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def write_record(spec: JailSpec, record: dict[str, object]) -> None:
    path = spec.dir / RECORD
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def read_record(jail_dir: Path) -> dict[str, object] | None:
    path = jail_dir / RECORD
    try:
        st = path.lstat()
        # Only a record root wrote counts: the owner could write into the jail base.
        if st.st_uid != 0 or not path.is_file():
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19]) if fields[0] not in ("Z", "X") else None
    except (IndexError, ValueError):
        return None


def teardown(jail_dir: Path, record: dict[str, object] | None, owner_uid: int) -> None:
    """Unmount, give lent files back to the owner, remove the jail. Safe to repeat."""
    if record is not None:
        for target in _strings(record.get("binds")):
            with contextlib.suppress(HostError):
                run.run(["umount", target])
        for source in _strings(record.get("writable")):
            with contextlib.suppress(OSError):
                os.chown(source, owner_uid, -1, follow_symlinks=False)
        tap = record.get("tap")
        if isinstance(tap, str) and Path(f"/sys/class/net/{tap}").exists():
            with contextlib.suppress(HostError):
                set_tap_owner(tap, owner_uid, -1)
        # The jailer's cgroup, named after the exec file (its default parent cgroup).
        cgroup = Path("/sys/fs/cgroup") / jail_dir.parent.name / jail_dir.name
        with contextlib.suppress(OSError):
            cgroup.rmdir()
    shutil.rmtree(jail_dir, ignore_errors=True)


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
