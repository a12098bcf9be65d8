"""The Debian catalog source: a root tree made with debootstrap.

debootstrap writes a minimal system into the pipeline's staging tree (beside
the image's destination, not a RAM-backed /tmp), which is then edited for
banger. ``image.pipeline.finish`` makes it an image; the staging directory is
removed whatever happens, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
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
    # `ssh NAME.vm` users rsync into a VM (and the workspace benchmark compares with it).
    "rsync",
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
            hint="run banger as root for the build (`sudo banger image pull debian-bookworm`),"
            " or pull an OCI image instead: `banger image pull docker.io/library/debian:bookworm`",
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
