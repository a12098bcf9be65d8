"""ext4 disk files made from a directory, without mounting anything.

``mkfs.ext4 -d`` copies a tree into a fresh filesystem (ownership, modes,
hard links, symlinks, device nodes and xattrs included), so neither loop
devices nor root are needed to make a disk. Files start sparse: a 4 GiB disk
costs only the blocks mkfs writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from banger import proc
from banger.errors import HostError, UserError

log = logging.getLogger("banger.image")

MIB = 1024 * 1024
GIB = 1024 * MIB
MIN_IMAGE_BYTES = GIB
# Headroom over the content: ext4's metadata, the journal, and room for the
# small writes a read-only root never gets but a rebuilt image might.
IMAGE_HEADROOM = 1.25
_LABEL_MAX = 16


def image_size(content_bytes: int) -> int:
    """Disk size for a tree of ``content_bytes``: 1 GiB or 125 % of it, in whole MiB."""
    wanted = max(MIN_IMAGE_BYTES, int(content_bytes * IMAGE_HEADROOM))
    return -(-wanted // MIB) * MIB


def dir_size_bytes(path: Path) -> int:
    """Apparent size of everything under ``path``: symlinks not followed, hard links once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    pending = [os.fspath(path)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return total


def temp_name(out: Path) -> Path:
    """A hidden name beside ``out`` (same filesystem, so the final rename is atomic)."""
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


def make_ext4(
    src: Path | None,
    out: Path,
    size_bytes: int,
    *,
    label: str = "",
    mode: int = 0o644,
    fresh_file_journal: bool = False,
    online_growth: bool = True,
) -> None:
    """Write a sparse ext4 of ``size_bytes`` at ``out``, filled from ``src`` when given.

    The disk is built under a temporary name and renamed into place, so ``out``
    is either absent or complete. ``mode`` is the disk file's own permission
    (0600 for a disk holding secrets).

    ``fresh_file_journal`` skips zeroing the journal. mkfs zeroes it so that
    a crash replay never mistakes old bytes on a reused device for log
    records; ``out`` is always a file made empty here, whose unwritten blocks
    read as zeros already, so nothing is lost, and the journal's 64 MiB
    (for a 4 GiB disk) stop being allocated before the guest writes a byte.
    ``online_growth=False`` leaves out the blocks reserved for growing the
    filesystem while mounted (a VM's disks only ever grow unmounted, with
    resize2fs, which needs no reserve).
    """
    if size_bytes < 8 * MIB:
        raise UserError(f"a disk of {size_bytes} bytes is too small for ext4 (8 MiB at least)")
    if len(label.encode()) > _LABEL_MAX:
        raise UserError(f"ext4 label {label!r} is longer than {_LABEL_MAX} bytes")
    if src is not None and not src.is_dir():
        raise HostError(f"cannot make a disk from {src}: not a directory")
    if proc.which("mkfs.ext4") is None:
        raise HostError(
            "mkfs.ext4 is not installed", hint="install e2fsprogs (apt-get install e2fsprogs)"
        )
    tmp = temp_name(out)
    argv: list[str | os.PathLike[str]] = ["mkfs.ext4", "-q", "-F", "-t", "ext4"]
    # No blocks reserved for root: these disks belong to one guest each.
    # mke2fs reads only its last -E, so the extended options travel together.
    extended = "root_owner=0:0" + (",lazy_journal_init=1" if fresh_file_journal else "")
    argv += ["-m", "0", "-E", extended]
    if label:
        argv += ["-L", label]
    if not online_growth:
        argv += ["-O", "^resize_inode"]
    if src is not None:
        argv += ["-d", src]
    argv += [tmp]
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)
            os.ftruncate(fd, size_bytes)
        finally:
            os.close(fd)
        proc.run(argv, timeout=1800)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log.info("made ext4 %s (%d MiB)", out, size_bytes // MIB)


def allocated_bytes(path: Path) -> int:
    """Bytes a (sparse) file really occupies on disk."""
    return os.stat(path).st_blocks * 512
