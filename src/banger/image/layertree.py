"""The directory a flattened image is written into, one tar entry at a time.

Every write happens relative to an open directory fd: each parent is resolved
here one component at a time with ``O_NOFOLLOW``, symlinks in a path are
followed the way a chroot would follow them (an absolute target restarts at
the image root, ``..`` may not climb above it), and a file is created with
``O_EXCL|O_NOFOLLOW`` after whatever held its name was removed, so nothing is
ever written through a link. ``banger.image.flatten`` feeds it entries; the
threat model is stated there.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

log = logging.getLogger("banger.image")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40
_FD_CACHE = 256
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class BadEntry(Exception):
    """An entry the layer must not contain; becomes a UserError naming blob and entry."""


def _clean(name: str) -> list[str]:
    if "\0" in name:
        raise BadEntry("the name contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadEntry("the name contains '..'")
    return parts


def _mtime_ns(member: tarfile.TarInfo) -> int:
    raw = member.pax_headers.get("mtime")
    if raw is not None:
        with contextlib.suppress(InvalidOperation):
            return int(Decimal(raw) * 1_000_000_000)
    return int(member.mtime) * 1_000_000_000


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            yield key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            with contextlib.suppress(ValueError):
                yield key[len("LIBARCHIVE.xattr.") :], base64.b64decode(value + "==")


class Tree:
    """The directory being built; keeps state that spans layers (directory times)."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.is_root = os.geteuid() == 0
        self._fds: dict[tuple[str, ...], int] = {}
        self._stale: list[int] = []
        self._dirs: dict[str, tuple[int, int]] = {}
        self._touched: set[str] = set()

    def close(self) -> None:
        self._invalidate()
        self._close_stale()
        os.close(self.root_fd)

    # -- resolving parents --------------------------------------------------

    def _invalidate(self) -> None:
        # Callers may still hold a cached fd during this entry; close it afterwards.
        self._stale.extend(self._fds.values())
        self._fds.clear()

    def _close_stale(self) -> None:
        for fd in self._stale:
            os.close(fd)
        self._stale.clear()

    def _open_path(self, parts: Sequence[str]) -> int:
        fd = os.dup(self.root_fd)
        for name in parts:
            nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd

    def parent(self, parts: Sequence[str], *, create: bool) -> int | None:
        """An fd (owned by the cache) for the directory at ``parts``, or None if missing."""
        key = tuple(parts)
        if key in self._fds:
            return self._fds[key]
        fd = self._resolve(parts, create)
        if fd is None:
            return None
        if len(self._fds) >= _FD_CACHE:
            self._invalidate()
        self._fds[key] = fd
        return fd

    def _resolve(self, parts: Sequence[str], create: bool) -> int | None:
        pending = list(reversed(parts))
        resolved: list[str] = []
        fd = os.dup(self.root_fd)
        links = 0
        try:
            while pending:
                name = pending.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not resolved:
                        raise BadEntry("a symlink in its path leads outside the image root")
                    resolved.pop()
                    os.close(fd)
                    fd = self._open_path(resolved)
                    continue
                try:
                    st = os.lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(name, 0o755, dir_fd=fd)
                    st = os.lstat(name, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise BadEntry("too many levels of symlinks in its path")
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        resolved = []
                        os.close(fd)
                        fd = os.dup(self.root_fd)
                    pending.extend(reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise BadEntry(f"its parent {'/'.join([*resolved, name])!r} is not a directory")
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
                resolved.append(name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- removing -----------------------------------------------------------

    def _remove(self, parent: int, name: str, path: str) -> None:
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self._invalidate()
            prefix = path + "/"
            for key in [k for k in self._dirs if k == path or k.startswith(prefix)]:
                del self._dirs[key]

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        name = base[len(WHITEOUT) :]
        if name in ("", ".", ".."):
            raise BadEntry("the whiteout names a path outside its directory")
        parent = self.parent(parts[:-1], create=False)
        if parent is None or (base != OPAQUE and base.startswith(WHITEOUT + WHITEOUT)):
            return  # nothing below to hide, or aufs bookkeeping (.wh..wh.plnk)
        prefix = "/".join(parts[:-1])
        if base == OPAQUE:
            self._clear_lower(parent, prefix)
            return
        self._remove(parent, name, f"{prefix}/{name}" if prefix else name)

    def _clear_lower(self, dirfd: int, prefix: str) -> None:
        # An opaque marker hides what lower layers put here, not this layer's entries.
        for child in os.listdir(dirfd):
            path = f"{prefix}/{child}" if prefix else child
            if path not in self._touched:
                self._remove(dirfd, child, path)
            elif stat.S_ISDIR(os.lstat(child, dir_fd=dirfd).st_mode):
                sub = os.open(child, _DIR_FLAGS, dir_fd=dirfd)
                try:
                    self._clear_lower(sub, path)
                finally:
                    os.close(sub)

    # -- creating -----------------------------------------------------------

    def begin_layer(self) -> None:
        """Start a new layer: its opaque markers hide only what earlier layers wrote."""
        self._touched = set()

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Apply one tar entry (its data read from ``tar``) to the tree."""
        try:
            self._entry(tar, member)
        finally:
            self._close_stale()

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _clean(member.name)
        if "\0" in member.linkname:
            raise BadEntry("the link target contains a NUL byte")
        if parts and parts[-1].startswith(WHITEOUT):
            self._whiteout(parts)
            return
        for i in range(1, len(parts) + 1):
            self._touched.add("/".join(parts[:i]))
        if not parts:
            if member.isdir():
                self._dir_meta(self.root_fd, member, "")
            return
        parent = self.parent(parts[:-1], create=True)
        assert parent is not None
        name, path = parts[-1], "/".join(parts)
        if member.isdir():
            self._mkdir(parent, name, path, member)
        elif member.isreg():
            self._file(tar, parent, name, path, member)
        elif member.islnk():
            self._hardlink(parent, name, path, member)
        elif member.issym():
            self._remove(parent, name, path)
            os.symlink(member.linkname, name, dir_fd=parent)
            self._meta_at(parent, name, member, chmod=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._special(parent, name, path, member)
        else:
            raise BadEntry(f"unsupported tar entry type {member.type!r}")

    def _mkdir(self, parent: int, name: str, path: str, member: tarfile.TarInfo) -> None:
        try:
            st = os.lstat(name, dir_fd=parent)
            exists = stat.S_ISDIR(st.st_mode)
        except FileNotFoundError:
            exists = False
        if not exists:
            self._remove(parent, name, path)
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            self._dir_meta(fd, member, path)
        finally:
            os.close(fd)

    def _dir_meta(self, fd: int, member: tarfile.TarInfo, path: str) -> None:
        if self.is_root:
            os.fchown(fd, member.uid, member.gid)
        # Writable by us until the end, when the real mode and time are set.
        os.fchmod(fd, member.mode | (0 if self.is_root else 0o700))
        self._set_xattrs(fd, member)
        self._dirs[path] = (member.mode, _mtime_ns(member))

    def _file(
        self, tar: tarfile.TarFile, parent: int, name: str, path: str, member: tarfile.TarInfo
    ) -> None:
        self._remove(parent, name, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        with open(fd, "wb", buffering=0) as out:
            src = tar.extractfile(member)
            if src is not None:
                shutil.copyfileobj(src, out, _CHUNK)
            if self.is_root:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode)
            self._set_xattrs(fd, member)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))

    def _hardlink(self, parent: int, name: str, path: str, member: tarfile.TarInfo) -> None:
        try:
            target = _clean(member.linkname)
        except BadEntry as exc:
            raise BadEntry(f"hard link target {member.linkname!r}: {exc}") from None
        tparent = self.parent(target[:-1], create=False) if target else None
        if tparent is None:
            raise BadEntry(f"hard link target {member.linkname!r} does not exist in the image")
        try:
            st = os.lstat(target[-1], dir_fd=tparent)
        except FileNotFoundError:
            raise BadEntry(
                f"hard link target {member.linkname!r} does not exist in the image"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise BadEntry(f"hard link target {member.linkname!r} is a directory")
        if "/".join(target) == path:
            return
        self._remove(parent, name, path)
        os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _special(self, parent: int, name: str, path: str, member: tarfile.TarInfo) -> None:
        self._remove(parent, name, path)
        if member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent)
        elif not self.is_root:
            log.warning("skipping device node %s: creating devices needs root", path)
            return
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | 0o600, dev, dir_fd=parent)
        self._meta_at(parent, name, member, chmod=True)

    def _meta_at(self, parent: int, name: str, member: tarfile.TarInfo, *, chmod: bool) -> None:
        """Ownership, mode, xattrs and time of a node we must not open (link, fifo, device)."""
        if self.is_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if chmod:  # the node was just made by mknod/mkfifo here, so it is no symlink
            os.chmod(name, member.mode, dir_fd=parent)
        self._set_xattrs(f"/proc/self/fd/{parent}/{name}", member)
        mtime = _mtime_ns(member)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _set_xattrs(self, target: int | str, member: tarfile.TarInfo) -> None:
        for key, value in _xattrs(member):
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                    raise
                log.warning("cannot set xattr %s on %s: %s", key, member.name, exc.strerror)

    def finish(self) -> None:
        """Directory modes and times last: writing into a directory changes its mtime."""
        for path in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            mode, mtime = self._dirs[path]
            parts = path.split("/") if path else []
            try:
                fd = self._dir_fd(parts)
            except (BadEntry, NotADirectoryError, FileNotFoundError, OSError):
                continue
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        self._close_stale()

    def _dir_fd(self, parts: list[str]) -> int:
        if not parts:
            return os.dup(self.root_fd)
        parent = self.parent(parts[:-1], create=False)
        if parent is None:
            raise FileNotFoundError(parts[-1])
        return os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
