"""The per-VM writable overlay disk.

Every VM made from an image shares that image's ext4 read-only; the VM's
writes land on this disk, which banger's initramfs mounts as the upper layer
of an overlay root. It is a fresh sparse ext4, so making one costs the same
for any image size: the image is never copied.

The disk also carries the VM's seed: files banger hands to the guest at boot
(its SSH host key, the user's public key), under ``seed/`` with owner-only
permissions. It is made with ``mkfs.ext4 -d`` from a temporary directory, so
no mount and no root are needed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from banger import proc
from banger.errors import HostError, UserError
from banger.image.ext4 import make_ext4

log = logging.getLogger("banger.disk")

SEED_DIR = "seed"
# Also keeps names safe to quote in a debugfs script.
_SEED_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
OVERLAY_LABEL = "banger-overlay"


def seed_relpath(name: str) -> PurePosixPath:
    """Validate a seed file name: relative, no ``..``, no empty parts."""
    parts = name.split("/")
    if not _SEED_NAME.fullmatch(name) or any(p in ("..", ".", "") for p in parts):
        raise UserError(
            f"seed file name {name!r} must be a relative path of letters, digits, '.', '_', '-'"
        )
    return PurePosixPath(name)


def create_overlay_disk(path: Path, size_bytes: int, seed: Mapping[str, bytes]) -> None:
    """Make the sparse ext4 ``path`` of ``size_bytes`` holding ``seed`` under ``seed/``.

    Files are mode 0600 and directories 0700, owned by root in the disk even
    when banger does not run as root; the disk file itself is 0600 (it holds
    the VM's private host key). On failure neither ``path`` nor any
    temporary file remains.
    """
    names = {name: seed_relpath(name) for name in seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the disk, not in /tmp: the seed holds a private key, and /tmp may
    # be shared or RAM-backed. mkdtemp makes it 0700.
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.seed-", dir=path.parent))
    try:
        seed_root = staging / SEED_DIR
        seed_root.mkdir(mode=0o700)
        for name, rel in names.items():
            _write_seed_file(seed_root, rel, seed[name])
        make_ext4(
            staging,
            path,
            size_bytes,
            label=OVERLAY_LABEL,
            mode=0o600,
            fresh_file_journal=True,
            online_growth=False,
        )
        if os.geteuid() != 0:
            try:
                _chown_root(path, [SEED_DIR, *(f"{SEED_DIR}/{rel}" for rel in _all_paths(names))])
            except BaseException:
                path.unlink(missing_ok=True)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("made overlay disk %s (%d MiB, %d seed file(s))", path, size_bytes >> 20, len(seed))


def _write_seed_file(seed_root: Path, rel: PurePosixPath, data: bytes) -> None:
    target = seed_root.joinpath(*rel.parts)
    parent = seed_root
    for part in rel.parts[:-1]:
        parent = parent / part
        parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(target, 0o600)  # the umask may have taken bits away; never adds any


def _all_paths(names: Mapping[str, PurePosixPath]) -> list[str]:
    """Every seed file and every directory leading to one, parents first."""
    paths: set[str] = set()
    for rel in names.values():
        for i in range(1, len(rel.parts) + 1):
            paths.add("/".join(rel.parts[:i]))
    return sorted(paths, key=lambda p: (p.count("/"), p))


def _chown_root(disk: Path, paths: list[str]) -> None:
    """Make ``paths`` in ``disk`` owned by root: mkfs -d copies the builder's uid.

    debugfs edits the unmounted image directly, so this needs no privilege.
    """
    script = "".join(f'set_inode_field "/{p}" uid 0\nset_inode_field "/{p}" gid 0\n' for p in paths)
    result = proc.run(["debugfs", "-w", "-f", "-", disk], input=script.encode(), timeout=120)
    # debugfs exits 0 even when a command fails; its errors are the stderr
    # lines after the version banner.
    errors = [
        line
        for line in result.stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("debugfs ")
    ]
    if errors:
        raise HostError(f"could not set seed ownership in {disk}: {errors[0]}")
