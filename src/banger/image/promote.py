"""``image promote``: a running VM's filesystem, as it is now, becomes an image.

The guest itself writes a tar of its merged root (image + overlay + work
disk at /root), so this works the same with any VMM and needs no mount on
the host. The tar is then applied with the same safe flattener registry
layers go through, into the tree ``image.pipeline.finish`` makes the image of.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from banger.errors import VmmError
from banger.image.flatten import Layer, flatten
from banger.units import format_size

log = logging.getLogger("banger.image")

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


def promote_tree(
    capture: Callable[[str, Path], int],
    tree: Path,
    *,
    archive: Path,
    progress: Callable[[str], None],
) -> None:
    """Fill ``tree`` from the tar the guest streams through ``capture(command, out)``.

    ``archive`` is where the tar is kept while it is unpacked (the caller's scratch space).
    """
    progress("copying the guest's filesystem out (tar over SSH)")
    status = capture(guest_tar_command(), archive)
    if status != 0:
        raise VmmError(
            f"tar in the guest failed (exit {status})",
            hint="the image needs a tar program (GNU tar or busybox tar)",
        )
    digest = "sha256:" + _sha256(archive)
    progress(f"unpacking {format_size(archive.stat().st_size)}")
    tree.mkdir()
    flatten([Layer(digest=digest, path=archive, size=archive.stat().st_size)], tree)
    archive.unlink()
    for name in ("proc", "sys", "dev", "run", "tmp", "mnt"):
        (tree / name).mkdir(exist_ok=True)
    (tree / "tmp").chmod(0o1777)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
