"""Things done to an image's file tree: its work seed, its size, removing a build tree."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path

from banger import proc

log = logging.getLogger("banger.image")

WORK_SEED_NAME = "work-seed"
_SETID = stat.S_ISUID | stat.S_ISGID
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def save_work_seed(tree: Path, dest: Path) -> Path:
    """Copy the tree's /root to ``dest/work-seed``; each VM's work disk starts as a copy.

    The seed lives on the host, beside the image, so nothing in it may be
    dangerous there: the seed directory is 0700 whatever mode the image gave
    its /root, setuid and setgid bits are dropped, and device nodes, FIFOs and
    sockets are left out (copying a device node would read the host's device).
    Ownership (when running as root), other modes and times are kept.
    """
    seed = dest / WORK_SEED_NAME
    seed.mkdir(mode=0o700)
    os.chmod(seed, 0o700)  # whatever the umask took away or the image asked for
    source = tree / "root"
    if source.is_symlink() or not source.is_dir():
        return seed
    as_root = os.geteuid() == 0
    _copy_children(source, seed, as_root)
    st = source.lstat()
    if as_root:
        os.lchown(seed, st.st_uid, st.st_gid)
    os.utime(seed, ns=(st.st_atime_ns, st.st_mtime_ns))
    return seed


def _copy_children(src: Path, dst: Path, as_root: bool) -> None:
    with os.scandir(src) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            target = dst / entry.name
            if stat.S_ISDIR(st.st_mode):
                target.mkdir(mode=0o700)
                _copy_children(Path(entry.path), target, as_root)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), target)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(Path(entry.path), target)
            else:
                log.warning("work seed: leaving out %s, not a file, directory or link", entry.path)
                continue
            # chown first: it would clear mode bits set before it.
            if as_root:
                os.lchown(target, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(target, stat.S_IMODE(st.st_mode) & ~_SETID)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: Path, dst: Path) -> None:
    with (
        open(os.open(src, _OPEN_FLAGS), "rb") as reader,
        open(os.open(dst, _CREATE_FLAGS, 0o600), "wb") as writer,
    ):
        shutil.copyfileobj(reader, writer, 1 << 20)


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
