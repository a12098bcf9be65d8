"""Images banger already made from an OCI manifest, kept to be linked again.

Pulling an image is mostly flattening its layers and writing the ext4, not
downloading (the blobs are cached already). A second pull of a manifest
banger has flattened with the same options gives the same disk, so the
finished image directory is kept here, hard-linked (the rootfs and the work
seed are read-only once made: VMs share them and never write to them), and
a re-pull links it into the new image in milliseconds.

An entry is keyed by everything that shapes the disk: the platform
manifest's digest, the guest agent bundle and script, the requested size and
this module's format. ``<cache>/flat/<key>/`` holds ``image/`` (as the
pipeline staged it) and ``meta.json`` (what registering needs), written
beside its final name and renamed, and removed by renaming it to a hidden
name first, so an entry is whole or absent whenever the daemon is killed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger import proc
from banger.errors import BangerError

log = logging.getLogger("banger.image")

# Bump when the pipeline makes a different disk from the same inputs.
FORMAT = 1
_IMAGE = "image"
_META = "meta.json"
_ROOTFS = "rootfs.ext4"


@dataclass(frozen=True)
class Flat:
    """A cached image directory and what was recorded when it was made."""

    image_dir: Path
    size_bytes: int
    init: str | None
    config: dict[str, Any]


def flat_key(manifest_digest: str, bundle: Path, agent_script: bytes, size: int | None) -> str:
    parts = {
        "format": FORMAT,
        "manifest": manifest_digest,
        # The bundle's directory name already hashes its packages and format.
        "bundle": bundle.name,
        "agent": hashlib.sha256(agent_script).hexdigest(),
        "size": size,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class FlatCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def lookup(self, key: str) -> Flat | None:
        entry = self.root / key
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return None
        # An entry half removed by an older banger killed in a prune still has its meta.
        if not (entry / _IMAGE / _ROOTFS).is_file():
            return None
        init = meta.get("init")
        return Flat(
            image_dir=entry / _IMAGE,
            size_bytes=int(meta["size_bytes"]),
            init=init if isinstance(init, str) else None,
            config=dict(meta.get("config") or {}),
        )

    def link_into(self, flat: Flat, dest: Path) -> bool:
        """Make ``dest`` (absent) a hard-linked copy of the cached image; False if it cannot."""
        try:
            _link_tree(flat.image_dir, dest)
        except (OSError, BangerError) as exc:
            # Another filesystem, say: the pull flattens again instead.
            log.warning("could not reuse %s: %s", flat.image_dir, exc)
            shutil.rmtree(dest, ignore_errors=True)
            return False
        return True

    def keep(
        self,
        key: str,
        image_dir: Path,
        *,
        size_bytes: int,
        init: str | None,
        config: Mapping[str, Any],
    ) -> None:
        """Remember a freshly made image directory; a failure here only costs the next pull."""
        entry = self.root / key
        if entry.exists():
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
            try:
                _link_tree(image_dir, work / _IMAGE)
                meta = {"size_bytes": size_bytes, "init": init, "config": dict(config)}
                (work / _META).write_text(json.dumps(meta))
                os.rename(work, entry)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        except (OSError, BangerError) as exc:
            log.warning("could not keep the flattened image for later pulls: %s", exc)

    def prune(self, dry_run: bool) -> tuple[int, int]:
        """Entries no image links any more: (bytes freed, entries)."""
        freed = count = 0
        if not self.root.is_dir():
            return 0, 0
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue  # a pull keeping its image right now, or a removal under way
            rootfs = entry / _IMAGE / _ROOTFS
            with contextlib.suppress(OSError):
                st = rootfs.stat()
                if st.st_nlink > 1:
                    continue  # an image still uses it
                freed += st.st_blocks * 512
            count += 1
            if not dry_run:
                _remove(entry)
        return freed, count


def _remove(entry: Path) -> None:
    # Out of its name in one rename first: removing a tree of thousands of files
    # takes a while, and a daemon killed during it must leave a hidden name (the
    # start-up sweep removes those), never an entry whose meta outlived its files.
    doomed = entry.with_name(f".{entry.name[:12]}-removing-{secrets.token_hex(4)}")
    try:
        os.rename(entry, doomed)
    except OSError as exc:
        log.warning("could not remove %s: %s", entry, exc)
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _link_tree(src: Path, dest: Path) -> None:
    # GNU cp: -a keeps modes, owners and times of directories and symlinks,
    # --link makes every file a hard link instead of a copy.
    proc.run(["cp", "-a", "--link", "--no-target-directory", src, dest], timeout=600)
