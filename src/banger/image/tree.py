"""Things done to an image's file tree before it becomes an ext4 disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

WORK_SEED_NAME = "work-seed"


def save_work_seed(tree: Path, dest: Path) -> Path:
    """Copy the tree's /root beside the image, ownership and modes kept.

    Each VM's work disk (its /root) starts as a copy of this.
    """
    seed = dest / WORK_SEED_NAME
    source = tree / "root"
    if source.is_symlink() or not source.is_dir():
        seed.mkdir(mode=0o700)
        return seed
    shutil.copytree(source, seed, symlinks=True)
    shutil.copystat(source, seed)
    if os.geteuid() == 0:
        for path in [seed, *seed.rglob("*")]:
            st = (source / path.relative_to(seed)).lstat()
            os.lchown(path, st.st_uid, st.st_gid)
    return seed


def content_size_for(tree: Path, requested: int | None) -> tuple[int, int]:
    """(content bytes, disk size): ``requested`` if given and large enough, else the rule."""
    from banger.errors import UserError
    from banger.image.ext4 import dir_size_bytes, image_size
    from banger.units import format_size

    content = dir_size_bytes(tree)
    if requested is None:
        return content, image_size(content)
    # ext4 needs room for its own metadata and journal beside the files.
    if requested < content * 1.1 + (64 << 20):
        raise UserError(
            f"--size {format_size(requested)} is too small for {format_size(content)} of files",
            hint=f"pass at least {format_size(content * 1.1 + (64 << 20))}, or leave --size out",
        )
    return content, requested
