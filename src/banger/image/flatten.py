"""Apply image layers, in order, onto one directory without ever leaving it.

Layers come from registries banger does not control, so every entry is
treated as hostile: names with ``..`` are refused, absolute names are taken
relative to the root, and each parent directory is resolved here, one
component at a time relative to an open directory, with symlinks followed
only the way a chroot would (a target that climbs above the root is an
error). Files are created with ``O_NOFOLLOW|O_EXCL`` after whatever was at
their name is removed, so nothing is ever written through a link.

This module reads the layers (decompression, digest check, the tar stream);
``banger.image.layertree`` writes each entry into the tree.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from banger import proc
from banger.errors import BangerError, HostError, UserError
from banger.image.layertree import BadEntry, Tree

log = logging.getLogger("banger.image")

__all__ = ["Layer", "Tree", "apply_layer", "flatten"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    digest: str
    path: Path
    size: int
    media_type: str = ""


class _HashingReader:
    """Counts and hashes the compressed bytes as the decompressor pulls them."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def apply_layer(tree: Tree, layer: Layer) -> None:
    """Apply one layer blob (plain, gzip or zstd tar) to ``tree``, checking its digest."""
    tree.begin_layer()
    with open(layer.path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(_ZSTD_MAGIC):
            _apply_zstd(tree, layer, raw)
            return
        reader = _HashingReader(raw)
        stream: IO[bytes] | _HashingReader = reader
        if magic.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[call-overload]
        _apply_tar(tree, layer, stream)
        reader.drain()
    _verify(layer, f"sha256:{reader.sha.hexdigest()}", reader.size)


def _apply_zstd(tree: Tree, layer: Layer, raw: IO[bytes]) -> None:
    # Python 3.11 has no zstd; the zstd tool decompresses to a scratch file.
    reader = _HashingReader(raw)
    reader.drain()
    _verify(layer, f"sha256:{reader.sha.hexdigest()}", reader.size)
    with tempfile.NamedTemporaryFile(dir=layer.path.parent, prefix=".tmp-zstd-") as tmp:
        try:
            proc.run(["zstd", "-d", "-q", "-f", "-o", tmp.name, layer.path])
        except HostError as exc:
            raise UserError(
                f"layer {layer.digest}: zstd could not decompress it: {exc.message}",
                hint="the layer is corrupt; pull again or report it to the image's owner",
            ) from exc
        with open(tmp.name, "rb") as plain:
            _apply_tar(tree, layer, plain)


def _apply_tar(tree: Tree, layer: Layer, stream: IO[bytes] | _HashingReader) -> None:
    name = "(archive header)"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name
                tree.entry(tar, member)
            name = "(end of archive)"
            while stream.read(_CHUNK):
                pass
    except BadEntry as exc:
        raise UserError(
            f"layer {layer.digest}: entry {name!r} refused: {exc}",
            hint="the image is malformed or hostile; nothing was written outside its tree",
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(
            f"layer {layer.digest}: corrupt or truncated archive at entry {name!r}: {exc}",
            hint="pull again; if it persists the image itself is broken",
        ) from None
    except BangerError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HostError(
                f"disk full while writing entry {name!r} of layer {layer.digest}",
                hint="free space where banger keeps images, then pull again",
            ) from exc
        raise HostError(
            f"layer {layer.digest}: cannot write entry {name!r}: {exc.strerror or exc}"
        ) from exc


def _verify(layer: Layer, digest: str, size: int) -> None:
    if digest != layer.digest or size != layer.size:
        raise UserError(
            f"layer {layer.digest} failed verification: {size} bytes hashing to {digest}"
            + (f", expected {layer.size} bytes" if size != layer.size else ""),
            hint="the cached blob is damaged; run `banger image cache prune` and pull again",
        )


def flatten(
    layers: Sequence[Layer],
    dest: Path,
    *,
    on_layer: Callable[[int, Layer], None] | None = None,
) -> None:
    """Apply ``layers`` in order onto the existing directory ``dest``."""
    tree = Tree(dest)
    try:
        for i, layer in enumerate(layers):
            if on_layer is not None:
                on_layer(i, layer)
            apply_layer(tree, layer)
        tree.finish()
    finally:
        tree.close()
