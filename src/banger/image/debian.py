"""Build a Debian root filesystem image with debootstrap.

Plan: debootstrap a minimal system into a temporary directory beside the
destination (same filesystem, not a RAM-backed /tmp), edit it for banger,
copy it into a sparse ext4 with ``mkfs.ext4 -d`` and delete the tree. On any
failure nothing is left behind: no tree, no partial disk, no empty dest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from banger import proc
from banger.errors import HostError
from banger.image.customize import customize_tree
from banger.image.ext4 import dir_size_bytes, image_size, make_ext4
from banger.image.tree import save_work_seed

log = logging.getLogger("banger.image")

PACKAGES = (
    "systemd-sysv",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "git",
    "less",
)
ROOTFS_NAME = "rootfs.ext4"
ROOTFS_LABEL = "banger-root"
DEBOOTSTRAP_TIMEOUT = 3600


@dataclass(frozen=True)
class ImageInfo:
    """What was built. Carries no mirror: the image is the same whichever served it."""

    rootfs: Path
    # The image's /root, copied out: each VM's work disk starts as a copy of it.
    work_seed: Path
    size_bytes: int
    content_bytes: int
    suite: str
    packages: tuple[str, ...]
    builder: str
    build_seconds: float


def debootstrap_argv(suite: str, tree: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(PACKAGES),
        suite,
        os.fspath(tree),
        mirror,
    ]


def check_can_build() -> None:
    """Raise HostError unless this process can run debootstrap."""
    if os.geteuid() != 0:
        raise HostError(
            "building a Debian image needs root (debootstrap creates device nodes and"
            " root-owned files)",
            hint="run banger as root for the build (`sudo banger image pull debian-bookworm`),"
            " or pull an OCI image instead: `banger image pull docker.io/library/debian:bookworm`",
        )
    if proc.which("debootstrap") is None:
        raise HostError(
            "debootstrap is not installed", hint="install it with `apt-get install debootstrap`"
        )


def build_debian_image(
    dest: Path,
    *,
    suite: str = "bookworm",
    mirror: str,
    progress: Callable[[str], None],
    prepare: Callable[[Path], None] | None = None,
) -> ImageInfo:
    """Build ``dest/rootfs.ext4``: Debian ``suite`` from ``mirror``, ready for banger.

    ``prepare``, when given, runs on the finished tree just before it becomes a disk.
    """
    check_can_build()
    started = time.monotonic()
    created_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-", dir=dest.parent))
    tree = work / "root"
    try:
        progress(f"debootstrap {suite} (minbase + {len(PACKAGES)} packages); this takes a minute")
        proc.run(debootstrap_argv(suite, tree, mirror), timeout=DEBOOTSTRAP_TIMEOUT)
        progress("preparing the tree for banger (ssh, systemd units, apt caches)")
        customize_tree(tree)
        if prepare is not None:
            prepare(tree)
        content = dir_size_bytes(tree)
        size = image_size(content)
        progress(f"writing the ext4 disk ({size // (1 << 20)} MiB for {content >> 20} MiB)")
        rootfs = dest / ROOTFS_NAME
        make_ext4(tree, rootfs, size, label=ROOTFS_LABEL)
        work_seed = save_work_seed(tree, dest)
    except BaseException:
        remove_tree(work)
        if created_dest:
            remove_tree(dest)
        raise
    remove_tree(work)
    elapsed = time.monotonic() - started
    log.info("built %s in %.1fs (%d MiB content)", rootfs, elapsed, content >> 20)
    return ImageInfo(
        rootfs=rootfs,
        work_seed=work_seed,
        size_bytes=size,
        content_bytes=content,
        suite=suite,
        packages=PACKAGES,
        builder="debootstrap --variant=minbase",
        build_seconds=round(elapsed, 1),
    )


def mounts_below(tree: Path, mounts_file: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Mount points under ``tree``, deepest first (the order to unmount them in)."""
    root = os.path.realpath(tree)
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in mounts_file.read_text().splitlines():
            fields = line.split()
            if len(fields) < 2:
                continue
            # /proc/mounts escapes spaces and friends as octal.
            point = fields[1].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(tree: Path) -> None:
    """Delete a build tree; a debootstrap killed mid-way may leave /proc or /sys mounted in it.

    Removing files through such a mount would reach the host's, so unmount first
    and refuse to delete if anything stays mounted.
    """
    if not tree.exists():
        return
    for point in mounts_below(tree):
        proc.run(["umount", "--lazy", point], check=False)
    left = mounts_below(tree)
    if left:
        log.error("not removing %s: %s still mounted", tree, left[0])
        return
    shutil.rmtree(tree, ignore_errors=True)
