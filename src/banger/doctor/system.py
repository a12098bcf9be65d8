"""Checks of the host's programs, devices, disk space and socket directory."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from banger.config import Settings
from banger.doctor.host import GIB, Check, Host, Status

WARN_FREE_BYTES = 5 * GIB
FAIL_FREE_BYTES = 1 * GIB
# sun_path is 108 bytes, including the terminating NUL.
MAX_SOCKET_PATH = 107


def check_tool(host: Host, binary: str, package: str, severity: Status, without: str) -> Check:
    """A program banger runs: ``severity`` when missing, saying what breaks."""
    found = host.which(binary)
    if found is None:
        return Check(
            binary,
            severity,
            f"{binary} not found: {without}",
            f"Install the Debian package {package}.",
        )
    return Check(binary, "ok", found)


def check_tun(host: Host) -> Check:
    tun = host.dev / "net" / "tun"
    if tun.exists():
        return Check("tun", "ok", f"{tun} present")
    return Check(
        "tun",
        "fail",
        f"{tun} is missing: VMs get no network",
        "Load the tun module (`modprobe tun`), or allow /dev/net/tun in this container.",
    )


def check_bridge(host: Host) -> Check:
    if host.which("ip") is None:
        return Check(
            "bridge",
            "fail",
            "ip not found: banger cannot make its bridge or taps",
            "Install the Debian package iproute2.",
        )
    if (host.sys_module / "bridge").exists():
        return Check("bridge", "ok", "bridge support loaded")
    # Not loaded is normal: the kernel loads it when the helper creates the bridge.
    return Check("bridge", "ok", "bridge module not loaded yet; it loads on first use")


def check_loop(host: Host) -> Check:
    control = host.dev / "loop-control"
    if control.exists():
        return Check("loop", "ok", f"{control} present")
    return Check(
        "loop",
        "info",
        f"{control} is missing: no loop devices",
        "Load the loop module (`modprobe loop`); banger's disks still work without it.",
    )


def check_device_mapper(host: Host) -> Check:
    control = host.dev / "mapper" / "control"
    if control.exists() or (host.sys_module / "dm_mod").exists():
        return Check("device-mapper", "ok", "device-mapper available")
    return Check(
        "device-mapper",
        "info",
        "device-mapper is absent: an in-guest overlay is used instead",
        "Load dm_mod (`modprobe dm_mod`, package dmsetup) to use device-mapper snapshots.",
    )


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False  # not a 64-bit ELF
            order = "<" if header[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        (kind,) = struct.unpack_from(order + "I", table, i * phentsize)
        if kind == 3:  # PT_INTERP
            return False
    return True


def check_busybox(settings: Settings) -> Check:
    """The static busybox in banger's initramfs: each pulled kernel carries its own.

    ``kernel pull`` and ``kernel import`` fetch Debian's busybox-static with
    apt-get and keep it next to the kernel; the host's busybox is never used.
    """
    found = sorted(settings.kernels_dir.glob("*/busybox"))
    broken = [path for path in found if not is_static_elf(path)]
    if broken:
        return Check(
            "busybox",
            "warn",
            f"{broken[0]} is not a static binary: that kernel's initramfs cannot boot",
            f"Delete the kernel {broken[0].parent.name} and pull it again (`banger kernel pull`).",
        )
    if found:
        return Check("busybox", "ok", f"static busybox of {len(found)} pulled kernel(s)")
    if any(settings.kernels_dir.glob("*/vmlinuz")):
        return Check("busybox", "ok", "the kernels here bring their own initramfs")
    return Check(
        "busybox",
        "info",
        "no kernel pulled yet: `banger kernel pull` fetches busybox-static with it",
        "Nothing to install; `banger image pull debian-bookworm` pulls its kernel too.",
    )


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(settings: Settings, host: Host) -> Check:
    where = _existing_ancestor(settings.home)
    try:
        free = host.free_bytes(where)
    except OSError as exc:
        return Check(
            "disk",
            "fail",
            f"cannot measure free space at {where}: {exc}",
            "Set home (BANGER_HOME) to a writable directory.",
        )
    detail = f"{free / GIB:.1f} GiB free at {where} (banger home {settings.home})"
    remedy = "Free some space there, or set home (BANGER_HOME) to a larger filesystem."
    if free < FAIL_FREE_BYTES:
        return Check("disk", "fail", detail, remedy)
    if free < WARN_FREE_BYTES:
        return Check("disk", "warn", detail, remedy)
    return Check("disk", "ok", detail)


def check_sockets(settings: Settings) -> Check:
    runtime = settings.runtime_dir
    remedy = "Set runtime_dir (BANGER_RUNTIME_DIR) to a short directory you can write."
    longest = max(len(os.fsencode(settings.socket)), len(os.fsencode(settings.helper_socket_path)))
    if longest > MAX_SOCKET_PATH:
        return Check(
            "sockets",
            "fail",
            f"socket paths under {runtime} are too long for unix sockets",
            remedy,
        )
    where = _existing_ancestor(runtime)
    if not where.is_dir():
        return Check("sockets", "fail", f"{where} is not a directory", remedy)
    if not os.access(where, os.W_OK | os.X_OK):
        return Check("sockets", "fail", f"{where} is not writable", remedy)
    if where == runtime:
        from banger import rundir
        from banger.errors import UserError

        try:
            rundir.check_private_dir(runtime, rundir.trusted_owners(settings))
        except UserError as exc:
            return Check("sockets", "fail", exc.message, exc.hint or remedy)
        return Check("sockets", "ok", f"{runtime} is writable and private (0700)")
    return Check("sockets", "ok", f"{runtime} will be created under {where}")
