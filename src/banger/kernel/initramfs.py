"""Build banger's initramfs: busybox, the virtio and overlay modules, and /init.

The archive is written here rather than by ``cpio`` so it needs no extra host
tool, builds without root (the console device node is just a header), and is
byte-for-byte reproducible: fixed inode numbers, mtimes and gzip header.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from banger.errors import HostError
from banger.guest import boot
from banger.kernel import modules as kmod

log = logging.getLogger("banger.kernel")

# What the guest needs before its root is mounted: the virtio transports
# (mmio for microvm and Firecracker, pci for other machines), disks, network,
# the console/agent port, overlayfs and vsock. Dependencies are added.
WANTED_MODULES = (
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "overlay",
    "vsock",
    "vmw_vsock_virtio_transport",
)

# Loaded where the kernel has them as modules: shared host directories
# (--mount) are virtio-9p, and a generic kernel (the one with 9p) builds ext4
# and the crc32c it checksums with as modules where the cloud kernel has them
# built in. A kernel without 9p still boots, without mounts.
OPTIONAL_MODULES = ("crc32c_generic", "ext4", "9pnet", "9pnet_virtio", "9p")

# The busybox applets /init uses, plus a few that make a rescue shell bearable.
APPLETS = (
    "sh", "mount", "umount", "mkdir", "cat", "echo", "sleep", "insmod", "ip",
    "hostname", "switch_root", "poweroff", "chmod", "chown", "cp", "rm", "ln",
    "readlink", "grep", "ls", "dmesg", "test", "[", "uname", "mknod",
)  # fmt: skip

LOAD_ORDER = "lib/modules/load-order"


@dataclass(frozen=True)
class Entry:
    path: str  # inside the archive, no leading slash
    mode: int  # full st_mode: type and permission bits
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def write_newc(entries: list[Entry]) -> bytes:
    """Serialise entries as an uncompressed ``newc`` (SVR4, no CRC) cpio archive."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.path.encode() + b"\0"
        is_dir = stat.S_ISDIR(entry.mode)
        fields = (
            ino if entry.path != "TRAILER!!!" else 0,
            entry.mode,
            0,  # uid
            0,  # gid
            2 if is_dir else 1,
            0,  # mtime: fixed, for reproducible archives
            len(entry.data),
            0,
            0,
            entry.rdev[0],
            entry.rdev[1],
            len(name),
            0,
        )
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        out += header + name + _pad(len(header) + len(name))
        out += entry.data + _pad(len(entry.data))
    return bytes(out)


def _dirs(*paths: str) -> list[Entry]:
    return [Entry(p, stat.S_IFDIR | 0o755) for p in paths]


def _module_entries(modules_root: Path, kernel_version: str) -> list[Entry]:
    tree = modules_root / kernel_version
    if not tree.is_dir():
        raise HostError(
            f"no modules for kernel {kernel_version} in {modules_root}",
            hint="pull the kernel again with `banger kernel pull`",
        )
    index = kmod.index_modules(tree)
    builtin_file = tree / "modules.builtin"
    builtin = (
        {kmod.module_name(Path(line)) for line in builtin_file.read_text().split()}
        if builtin_file.is_file()
        else set()
    )
    missing = [m for m in WANTED_MODULES if m not in index and m not in builtin]
    if missing:
        raise HostError(
            f"kernel {kernel_version} lacks the module(s) {', '.join(missing)}",
            hint="banger needs a kernel with virtio, overlayfs and vsock support",
        )
    entries: list[Entry] = []
    order: list[str] = []
    dirs: set[str] = set()
    optional = tuple(m for m in OPTIONAL_MODULES if m in index)
    for path in kmod.resolve((*WANTED_MODULES, *optional), index):
        rel = path.relative_to(tree).as_posix()
        rel = rel.removesuffix(".xz").removesuffix(".zst")
        parent = f"lib/modules/{kernel_version}/{rel}".rsplit("/", 1)[0]
        while parent not in dirs and parent != "lib/modules":
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]
        entries.append(Entry(f"lib/modules/{kernel_version}/{rel}", stat.S_IFREG | 0o644,
                             kmod.read_module(path)))  # fmt: skip
        order.append(f"{kernel_version}/{rel}")
    load_order = "".join(f"{line}\n" for line in order).encode()
    return [
        *_dirs(*sorted(dirs)),
        *entries,
        Entry(LOAD_ORDER, stat.S_IFREG | 0o644, load_order),
    ]


def initramfs_entries(modules_root: Path, kernel_version: str, busybox: Path) -> list[Entry]:
    """Everything in the archive, parents before children."""
    base = _dirs("bin", "dev", "proc", "sys", "run", "lib", "lib/modules", "lower", "overlay",
                 "newroot", "etc")  # fmt: skip
    # The kernel opens /dev/console for init before /init can mount devtmpfs.
    console = Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    applets = [Entry(f"bin/{name}", stat.S_IFLNK | 0o777, b"busybox") for name in APPLETS]
    return [
        *base,
        console,
        Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
        *applets,
        *_module_entries(modules_root, kernel_version),
        Entry("init", stat.S_IFREG | 0o755, boot.init_script()),
    ]


def build_initramfs(modules_root: Path, kernel_version: str, busybox: Path, out: Path) -> None:
    """Write the gzip-compressed initramfs for ``kernel_version`` to ``out``.

    ``modules_root`` is the directory holding ``<kernel_version>/`` (a
    ``lib/modules`` tree); ``busybox`` must be a static binary.
    """
    archive = write_newc(initramfs_entries(modules_root, kernel_version, busybox))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(gzip.compress(archive, compresslevel=6, mtime=0))
    tmp.replace(out)
    log.info("initramfs %s: %d KiB", out, out.stat().st_size // 1024)


def initramfs_path(kernel_dir: Path) -> Path:
    """Where banger's initramfs for its current /init lives in a kernel's directory.

    The file name carries a digest of the /init script and the module lists, so a banger upgrade
    that changes the boot contract never boots a VM with a stale /init, and
    VMs already running keep the file they booted from.
    """
    # The module lists too: a banger that loads more modules builds a new one.
    modules = "\n".join((*WANTED_MODULES, *OPTIONAL_MODULES)).encode()
    digest = hashlib.sha256(boot.init_script() + modules).hexdigest()[:12]
    return kernel_dir / f"initramfs-{digest}.img"


def owns_initramfs(kernel_dir: Path) -> bool:
    """Whether banger builds this kernel's initramfs (it keeps the modules and busybox)."""
    return (kernel_dir / "busybox").exists() and (kernel_dir / "modules").is_dir()
