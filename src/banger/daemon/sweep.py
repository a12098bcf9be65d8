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

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from banger.config import Settings

log = logging.getLogger("banger.daemon")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    for directory in _subdirs(settings.vms_dir):
        if directory.resolve() not in known:
            leftovers.append(directory)  # a create that died before its row, or a delete after
        else:
            leftovers += _hidden(directory)
    lines = []
    for path in sorted(set(leftovers)):
        _remove(path)
        lines.append(f"removed {path}, left by interrupted work")
    for line in lines:
        log.info("sweep: %s", line)
    return lines
