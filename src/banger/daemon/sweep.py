"""At daemon start: remove what a killed daemon was in the middle of writing.

banger writes everything beside its final name under a hidden temporary
name and renames it into place (pipeline staging, kernel downloads, blobs,
seeds, disks being made), so after a kill -9 the leftovers are exactly the
hidden entries in banger's own directories, and VM and image directories
the store no longer names (a pull killed between renaming its image into
place and registering it, or a delete between its row and its files).
Nothing runs yet when this does (the daemon has not begun serving, and one
daemon owns a home), so nothing here can be in use; and it looks only at
the top level of banger's directories, never inside a tree it did not name
(an image's work seed has dotfiles of its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from banger.config import Settings
from banger.image.tree import remove_tree

log = logging.getLogger("banger.daemon")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # A debootstrap killed with the daemon leaves /proc and /sys mounted in
        # its tree: unmounted first, never deleted through.
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)


def _touches(pid: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the process works on one of the paths: in its argv, cwd or root."""
    where = Path("/proc") / pid
    try:
        seen = (where / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    for link in ("cwd", "root"):
        with contextlib.suppress(OSError):
            seen.append(os.readlink(where / link))
    return any(arg.endswith(p) or p + "/" in arg for arg in seen for p in prefixes)


def _stop_workers(leftovers: list[Path]) -> list[int]:
    """Kill what the dead daemon's children still do there (mkfs, cp, debootstrap...).

    They outlive a daemon killed with SIGKILL and would go on writing into,
    or mounting in, what is about to be removed.
    """
    prefixes = tuple(str(p) for p in leftovers)
    if not prefixes:
        return []
    killed = []
    for entry in Path("/proc").iterdir():
        skip = not entry.name.isdigit() or int(entry.name) == os.getpid()
        if not skip and _touches(entry.name, prefixes):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in killed):
        time.sleep(0.05)
    return killed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _hidden(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.name.startswith(".")]
    except OSError:
        return []


def _subdirs(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def sweep(settings: Settings, vm_dirs: Iterable[Path], *, image_names: Iterable[str]) -> list[str]:
    """Remove leftovers of interrupted work; one line per removal, for the log."""
    known = {p.resolve() for p in vm_dirs}
    images = set(image_names)
    leftovers: list[Path] = []
    cache = settings.cache_dir
    for directory in (settings.kernels_dir, settings.images_dir, settings.vms_dir,
                      cache / "agent", cache / "flat"):  # fmt: skip
        leftovers += _hidden(directory)
    for directory in _subdirs(settings.kernels_dir):
        leftovers += _hidden(directory)
        leftovers += [p for p in directory.glob("*.tmp") if p.is_file()]
    leftovers += _hidden(cache / "oci" / "blobs" / "sha256")
    leftovers += [d for d in _subdirs(settings.images_dir) if d.name not in images]
    for name in images:  # boot snapshots being saved are hidden until renamed
        leftovers += _hidden(settings.boot_snapshots_dir(name))
    for directory in _subdirs(settings.vms_dir):
        if directory.resolve() not in known:
            leftovers.append(directory)  # a create that died before its row, or a delete after
        else:
            leftovers += _hidden(directory)
    lines = [f"killed pid {pid}, still working in what interrupted work left"
             for pid in _stop_workers(sorted(set(leftovers)))]  # fmt: skip
    for path in sorted(set(leftovers)):
        _remove(path)
        lines.append(f"removed {path}, left by interrupted work")
    for line in lines:
        log.info("sweep: %s", line)
    return lines
