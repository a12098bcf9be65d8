"""What this helper made, and for whom: the only things it will change or remove.

A name carrying banger's prefix proves nothing (anyone with root, or another
owner's helper, can make a ``bg...`` link), so the helper records every
interface and nftables table it creates together with the uid that asked,
and its verbs act only on entries of their caller (root may act on any).
Kinds are free-form strings: ``link`` and ``table`` now; the jailer's VMMs
record themselves the same way (``vmm``).

The record lives in a directory only root can write, opened once and used
through its descriptor, so nobody can swap the file or the directory under
it; ``/run`` is the natural place, since a reboot clears the links and tables
too. Without a directory (tests, a helper run by hand) it is kept in memory.
Standard library only: this runs as root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
from pathlib import Path

from banger.helper.errors import Conflict, HostError, Refused

log = logging.getLogger("banger.helper")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_BYTES = 1 << 20


class Ledger:
    def __init__(self, state_dir: Path | None = None, name: str = "owned.json") -> None:
        self._lock = threading.Lock()
        self._name = name
        self._dir_fd = _open_private_dir(state_dir) if state_dir is not None else None
        self._owners: dict[tuple[str, str], int] = self._load()

    def _load(self) -> dict[tuple[str, str], int]:
        if self._dir_fd is None:
            return {}
        try:
            fd = os.open(self._name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as reader:
            raw = reader.read(_MAX_BYTES)
        try:
            entries = json.loads(raw)
            return {(str(e["kind"]), str(e["name"])): int(e["owner_uid"]) for e in entries}
        except (ValueError, TypeError, KeyError) as exc:
            raise HostError(f"the helper's record {self._name} is damaged: {exc}") from exc

    def _save(self) -> None:
        if self._dir_fd is None:
            return
        entries = [
            {"kind": kind, "name": name, "owner_uid": uid}
            for (kind, name), uid in sorted(self._owners.items())
        ]
        temp = f".{self._name}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=self._dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=self._dir_fd)
        with os.fdopen(fd, "w") as writer:
            json.dump(entries, writer)
        os.rename(temp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)

    def owner(self, kind: str, name: str) -> int | None:
        with self._lock:
            return self._owners.get((kind, name))

    def record(self, kind: str, name: str, owner_uid: int) -> None:
        with self._lock:
            self._owners[(kind, name)] = owner_uid
            self._save()
        log.info("recorded %s %s for uid %d", kind, name, owner_uid)

    def forget(self, kind: str, name: str) -> None:
        with self._lock:
            if self._owners.pop((kind, name), None) is not None:
                self._save()

    def names(self, kind: str, caller_uid: int) -> list[str]:
        """Entries of ``kind`` the caller may act on."""
        with self._lock:
            return sorted(
                name
                for (k, name), uid in self._owners.items()
                if k == kind and caller_uid in (0, uid)
            )

    def check(self, kind: str, name: str, caller_uid: int) -> None:
        """Raise unless ``caller_uid`` may change ``name``: recorded for them (or root)."""
        owner = self.owner(kind, name)
        if owner is None:
            raise Conflict(
                f"{kind} {name} was not made by this banger-helper; leaving it alone",
                hint=f"if it is a leftover, remove it as root (`sudo ip link del {name}` for a"
                " link), or configure another bridge name",
            )
        if caller_uid not in (0, owner):
            raise Refused(
                f"{kind} {name} belongs to uid {owner}, not uid {caller_uid}",
                hint="each user's banger uses its own bridge and taps",
            )


def _open_private_dir(path: Path) -> int:
    """The state directory, created if needed; refused unless only this uid can write it."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise HostError(
            f"cannot open the helper's state directory {path}: {exc.strerror}",
            hint="pass --state-dir a directory only root can write (/run/banger/helper/state)",
        ) from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o022:
        os.close(fd)
        raise HostError(
            f"the helper's state directory {path} is owned by uid {st.st_uid} with mode"
            f" {stat.S_IMODE(st.st_mode):o}; only uid {os.geteuid()} may write it",
            hint=f"remove it (`sudo rm -r {path}`) and start the helper again",
        )
    return fd
