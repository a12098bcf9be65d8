"""A content-addressed blob cache: ``<cache>/blobs/sha256/<hex>``.

A blob reaches its final name only after its sha256 and size have been
checked, by a rename within one directory, so a name in the cache is a
promise about its bytes and a crash never leaves a half-written blob there.
Concurrent pulls of the same blob each write their own temp file; the last
rename wins with identical bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from banger.errors import HostError, UserError
from banger.image.reference import is_digest

log = logging.getLogger("banger.image")

# (bytes so far, bytes in all) while a blob streams in.
ByteProgress = Callable[[int, int], None]
_TMP_PREFIX = ".tmp-"


def short(digest: str) -> str:
    """``sha256:0123456789ab``: enough to tell layers apart in messages."""
    return digest[:19]


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def blob_dir(self) -> Path:
        return self.root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        # The digest becomes a file name: anything but sha256:<64 hex> could
        # point the cache elsewhere on disk.
        if not is_digest(digest):
            raise UserError(
                f"unsupported or malformed digest {digest!r}",
                hint="banger verifies sha256 digests only; the manifest may be corrupt",
            )
        return self.blob_dir / digest.split(":", 1)[1]

    def has(self, digest: str, size: int) -> bool:
        try:
            return self.path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    async def store(
        self,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        progress: ByteProgress | None = None,
    ) -> Path:
        """Stream ``chunks`` into the cache, verifying as they come; return the blob path."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{_TMP_PREFIX}{final.name}-{os.getpid()}-{secrets.token_hex(4)}")
        hasher = hashlib.sha256()
        done = 0
        try:
            with open(tmp, "wb") as out:
                async for chunk in chunks:
                    done += len(chunk)
                    if done > size:
                        raise _mismatch(digest, f"it is larger than the {size} bytes announced")
                    hasher.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(done, size)
            if done != size:
                raise _mismatch(digest, f"got {done} of {size} bytes (truncated)")
            actual = f"sha256:{hasher.hexdigest()}"
            if actual != digest:
                raise _mismatch(digest, f"its content hashes to {actual}")
            try:
                os.replace(tmp, final)
            except FileNotFoundError as exc:
                raise HostError(
                    f"blob {short(digest)} vanished from the cache while it was stored",
                    hint="the cache was probably pruned during the pull; pull again",
                ) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.debug("cached %s (%d bytes)", digest, size)
        return final


def _mismatch(digest: str, why: str) -> UserError:
    return UserError(
        f"blob {digest} failed verification: {why}",
        hint="the registry sent different content than its manifest names; pull again, "
        "and if it persists the image is corrupt",
    )


def _tree_usage(root: Path) -> tuple[int, int]:
    total = 0
    blobs = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
                if not name.startswith(_TMP_PREFIX) and os.path.basename(dirpath) == "sha256":
                    blobs += 1
    return total, blobs


def cache_prune(cache_dir: Path, dry_run: bool) -> tuple[int, int]:
    """Remove the whole cache; return (bytes freed, blobs removed).

    The directory is renamed aside first so a pull in flight sees either the
    old cache or none, never a half-deleted tree.
    """
    if not cache_dir.exists():
        return 0, 0
    if dry_run:
        return _tree_usage(cache_dir)
    aside = cache_dir.with_name(f".{cache_dir.name}.prune-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(cache_dir, aside)
    except FileNotFoundError:
        return 0, 0
    freed = _tree_usage(aside)
    shutil.rmtree(aside)
    return freed
