"""The runtime directory: where bangerd's socket and pidfiles live, checked before use.

Without ``XDG_RUNTIME_DIR`` (typical under sudo) the runtime directory is
``/tmp/banger-$UID``, a name any local user can create first. Whoever owns
it can put a socket of their own where the CLI looks for bangerd, and a fake
daemon answers whatever it likes. So the directory is used only when it is a
real directory (not a symlink), owned by this user (or root), with no access
for anyone else; otherwise banger refuses, with a hint, and changes nothing.
Pidfiles inside are created fresh and never written through a symlink.
"""

from __future__ import annotations

import os
import stat

from banger.errors import UserError

# Not typing.TYPE_CHECKING: a tab checks this directory, and pays for what it imports.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from banger.config import Settings

_PIDFILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: Path, why: str) -> UserError:
    return UserError(
        f"runtime directory {path} {why}; banger will not use it",
        hint=f"if you did not make it, someone else may have: remove it (`rm -r {path}`,"
        " as root if needed) or set BANGER_RUNTIME_DIR to a private directory, then run"
        " `banger daemon start`",
    )


def check_private_dir(path: Path, trusted: Collection[int] = ()) -> Path:
    """``path`` as it is: a directory owned by this uid, root or ``trusted``, mode 0700."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _refuse(path, "does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory")
    owners = {os.getuid(), 0, *trusted}
    if st.st_uid not in owners:
        raise _refuse(path, f"belongs to uid {st.st_uid}, not to you (uid {os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise _refuse(path, f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700")
    return path


def ensure_private_dir(path: Path, trusted: Collection[int] = ()) -> Path:
    """Create ``path`` 0700 if it is missing (parents as needed), then check it."""
    import contextlib  # here, not at the top: a tab checks the directory and pays for imports

    if not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            # mkdir never follows a symlink someone raced into place; the check does the rest.
            os.mkdir(path, 0o700)
    return check_private_dir(path, trusted)


def write_pidfile(path: Path, pid: int) -> None:
    """Write ``pid`` to a new file at ``path`` (an old file or symlink there is replaced)."""
    import contextlib

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, _PIDFILE_FLAGS, 0o600)
    with os.fdopen(fd, "w") as writer:
        writer.write(f"{pid}\n")


def trusted_owners(settings: Settings) -> set[int]:
    """Who besides this user and root may own the runtime directory.

    In system mode it is the installed owner's, and that owner is whoever
    owns the state directory (which only root could have made, under /var/lib).
    """
    if settings.mode != "system":
        return set()
    return home_owner(settings.home)


def home_owner(home: str | Path) -> set[int]:
    """The uid that owns the state directory ``home``; nobody when it is not there."""
    try:
        return {os.lstat(home).st_uid}
    except OSError:
        return set()
