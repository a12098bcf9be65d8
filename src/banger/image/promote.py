"""``image promote``: a running VM's filesystem, as it is now, becomes an image.

The guest itself writes a tar of its merged root (image + overlay + work
disk at /root), so this works the same with any VMM and needs no mount on
the host. The tar is then applied with the same safe flattener registry
layers go through.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from banger.errors import VmmError
from banger.image.debian import remove_tree
from banger.image.ext4 import make_ext4
from banger.image.flatten import Layer, flatten
from banger.image.tree import WORK_SEED_NAME, content_size_for, save_work_seed
from banger.units import format_size

log = logging.getLogger("banger.image")

ROOTFS_NAME = "rootfs.ext4"
# Kernel filesystems and per-boot state stay out; banger's seeded keys too, since
# every VM made from the image gets its own.
_EXCLUDES = (
    "./proc", "./sys", "./dev", "./run", "./tmp", "./mnt",
    "./etc/ssh/ssh_host_ed25519_key", "./etc/ssh/ssh_host_ed25519_key.pub",
    "./root/.ssh/authorized_keys", "./etc/machine-id",
)  # fmt: skip


def guest_tar_command() -> str:
    excludes = " ".join(f"--exclude={path}" for path in _EXCLUDES)
    # GNU tar and busybox tar both take this; --numeric-owner keeps uids exact.
    return f"cd / && tar -c -f - --numeric-owner {excludes} . 2>/dev/null || [ $? -eq 1 ]"


@dataclass(frozen=True)
class Promoted:
    rootfs: Path
    work_seed: Path
    size_bytes: int


def promote_from_guest(
    capture: Callable[[str, Path], int],
    dest: Path,
    *,
    size_bytes: int | None,
    progress: Callable[[str], None],
) -> Promoted:
    """Build ``dest`` from the tar the guest streams through ``capture(command, out)``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.promote-", dir=dest.parent))
    try:
        archive = work / "root.tar"
        progress("copying the guest's filesystem out (tar over SSH)")
        status = capture(guest_tar_command(), archive)
        if status != 0:
            raise VmmError(
                f"tar in the guest failed (exit {status})",
                hint="the image needs a tar program (GNU tar or busybox tar)",
            )
        digest = "sha256:" + _sha256(archive)
        progress(f"unpacking {format_size(archive.stat().st_size)}")
        tree = work / "tree"
        tree.mkdir()
        flatten([Layer(digest=digest, path=archive, size=archive.stat().st_size)], tree)
        archive.unlink()
        for name in ("proc", "sys", "dev", "run", "tmp", "mnt"):
            (tree / name).mkdir(exist_ok=True)
        (tree / "tmp").chmod(0o1777)
        content, size = content_size_for(tree, size_bytes)
        progress(f"writing the ext4 disk ({format_size(size)} for {format_size(content)})")
        staged = work / "image"
        staged.mkdir()
        make_ext4(tree, staged / ROOTFS_NAME, size, label="banger-root")
        save_work_seed(tree, staged)
        staged.rename(dest)
    finally:
        remove_tree(work)
    return Promoted(rootfs=dest / ROOTFS_NAME, work_seed=dest / WORK_SEED_NAME, size_bytes=size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
