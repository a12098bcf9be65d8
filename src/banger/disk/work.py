"""A VM's work disk: ext4 mounted at /root in the guest, seeded from the image.

It outlives restarts and carries the user's work; the system overlay holds
everything else the guest writes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from banger import proc
from banger.errors import HostError, UserError
from banger.image.ext4 import make_ext4
from banger.units import format_size

log = logging.getLogger("banger.disk")

WORK_LABEL = "banger-work"


def create_work_disk(path: Path, size_bytes: int, seed: Path | None) -> None:
    """Make the sparse ext4 ``path``, holding a copy of ``seed`` (the image's /root)."""
    source = seed if seed is not None and seed.is_dir() else None
    # A full-size journal that costs nothing until used (see make_ext4), and no
    # online-growth reserve: grow_work_disk grows it unmounted.
    make_ext4(
        source,
        path,
        size_bytes,
        label=WORK_LABEL,
        mode=0o600,
        fresh_file_journal=True,
        online_growth=False,
    )
    log.info("made work disk %s (%s)", path, format_size(size_bytes))


def grow_work_disk(path: Path, size_bytes: int) -> bool:
    """Grow the (unmounted) work disk to ``size_bytes``; False when already that size.

    Shrinking is refused: it could cut into the user's files.
    """
    current = path.stat().st_size
    if size_bytes == current:
        return False
    if size_bytes < current:
        raise UserError(
            f"the work disk is {format_size(current)}; it cannot shrink to"
            f" {format_size(size_bytes)}",
            hint="pass a larger --work-disk-size, or copy the work out and make a new VM",
        )
    # resize2fs insists on a recently checked filesystem. e2fsck exits 1 or 2
    # when it fixed something, which is fine; 4 and up means it could not.
    check = proc.run(["e2fsck", "-f", "-p", path], check=False, timeout=600)
    if check.returncode >= 4:
        raise HostError(
            f"the work disk {path} has errors e2fsck could not fix (exit {check.returncode})",
            hint=f"inspect it with `e2fsck -f {path}` before growing it",
        )
    with open(path, "r+b") as disk:
        os.ftruncate(disk.fileno(), size_bytes)
    proc.run(["resize2fs", path], timeout=600)
    log.info("grew work disk %s to %s", path, format_size(size_bytes))
    return True
