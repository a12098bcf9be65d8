"""The Debian catalog source: a root tree made with debootstrap.

debootstrap writes a minimal system into the pipeline's staging tree (beside
the image's destination, not a RAM-backed /tmp), which is then edited for
banger. ``image.pipeline.finish`` makes it an image; the staging directory is
removed whatever happens, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from banger import proc
from banger.errors import HostError
from banger.image.customize import customize_tree

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
DEBOOTSTRAP_TIMEOUT = 3600


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
            hint="run bangerd as root, or install banger's system service with"
            " `sudo banger system install`",
        )
    if proc.which("debootstrap") is None:
        raise HostError(
            "debootstrap is not installed", hint="install it with `apt-get install debootstrap`"
        )


def build_debian_tree(
    tree: Path, *, suite: str = "bookworm", mirror: str, progress: Callable[[str], None]
) -> None:
    """Debootstrap Debian ``suite`` from ``mirror`` into ``tree`` and prepare it for banger."""
    check_can_build()
    started = time.monotonic()
    progress(f"debootstrap {suite} (minbase + {len(PACKAGES)} packages); this takes a minute")
    proc.run(debootstrap_argv(suite, tree, mirror), timeout=DEBOOTSTRAP_TIMEOUT)
    progress("preparing the tree for banger (ssh, systemd units, apt caches)")
    customize_tree(tree)
    log.info("debootstrapped %s into %s in %.1fs", suite, tree, time.monotonic() - started)


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
