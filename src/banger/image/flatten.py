"""Apply image layers, in order, onto one directory without ever leaving it.

Layers come from registries banger does not control, so every entry is
treated as hostile: names with ``..`` are refused, absolute names are taken
relative to the root, and each parent directory is resolved here, one
component at a time relative to an open directory, with symlinks followed
only the way a chroot would (a target that climbs above the root is an
error). Files are created with ``O_NOFOLLOW|O_EXCL`` after whatever was at
their name is removed, so nothing is ever written through a link.

Absolute entry names and writes through a symlink to ``/`` (or to any
absolute target) are contained, not refused: they land inside the image, as
with umoci, because that is what the image would see once it boots.

A layer must read to its end: the tar stream ends with the two zero blocks
tar writers put there (any padding after them all zeros), or exactly at a
block boundary after its last member. Python's ``tarfile`` silently stops at
a bad header, which would register an image with the rest of the layer
missing; here such a layer is refused, naming the blob and the byte offset.

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
# A pax or GNU long-name header is read whole into memory: a few KiB in any
# real image; a 99 KiB gzip layer declaring one of hundreds of MiB took the
# pull from 20 to 407 MiB of memory.
MAX_HEADER_BYTES = 1 << 20
# What one layer may unpack to: far above any real layer, far below a disk.
MAX_LAYER_BYTES = 64 << 30
_LONG_HEADERS = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


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


class _Capped:
    """Passes the uncompressed tar stream through, refusing more than ``limit`` bytes."""

    def __init__(self, f: IO[bytes] | _HashingReader, limit: int, digest: str) -> None:
        self._f = f
        self._left = limit
        self._limit = limit
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n >= 0 else self._left + 1)
        self._left -= len(data)
        if self._left < 0:
            raise UserError(
                f"layer {self._digest} unpacks to more than {self._limit} bytes; refused",
                hint="the layer is a decompression bomb or far larger than any real image",
            )
        return data

    def tell(self) -> int:
        return self._limit - self._left


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
        _apply_tar(tree, layer, _Capped(stream, MAX_LAYER_BYTES, layer.digest))
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
            _apply_tar(tree, layer, _Capped(plain, MAX_LAYER_BYTES, layer.digest))


class _BadEnd(Exception):
    """The tar stream stops somewhere other than a clean end of archive."""

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(why)
        self.offset = offset
        self.why = why


# tarfile ends its iteration quietly on these; only they may close an archive.
_QUIET_ENDS = ("EOFHeaderError", "EmptyHeaderError")


class _StrictInfo(tarfile.TarInfo):
    """Headers that do not read are errors, not a silent end of the archive."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictInfo:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _LONG_HEADERS and info.size > MAX_HEADER_BYTES:
            raise BadEntry(f"its {info.size}-byte extended header is over {MAX_HEADER_BYTES} bytes")
        return info

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> _StrictInfo:
        try:
            return super().fromtarfile(tar)
        except _BadEnd:
            raise
        except tarfile.TarError as exc:
            if type(exc).__name__ in _QUIET_ENDS:
                raise  # a zero block or EOF: checked once iteration has stopped
            raise _BadEnd(tar.offset, f"the header there does not read ({exc})") from None


def _check_end(tar: tarfile.TarFile) -> None:
    """After the last member: EOF right there, or two zero blocks and only zeros after."""
    end = tar.offset
    stream = tar.fileobj
    if stream.tell() == end:
        return  # a clean EOF at the block boundary after the last member
    seen = tarfile.BLOCKSIZE  # tarfile read one zero block
    while chunk := stream.read(_CHUNK):
        junk = len(chunk) - len(chunk.lstrip(b"\0"))
        if junk < len(chunk):
            raise _BadEnd(end + seen + junk, "there is data after the end-of-archive marker")
        seen += len(chunk)
    if seen < 2 * tarfile.BLOCKSIZE:
        raise _BadEnd(end, "the archive stops after one of the two zero blocks that end it")


def _apply_tar(tree: Tree, layer: Layer, stream: _Capped) -> None:
    name = "(archive header)"
    tar: tarfile.TarFile | None = None
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=stream, mode="r|", tarinfo=_StrictInfo
        ) as tar:
            for member in tar:
                name = member.name
                tree.entry(tar, member)
            name = "(end of archive)"
            _check_end(tar)
        while stream.read(_CHUNK):  # a compressed stream checks its own end here
            pass
    except _BadEnd as exc:
        raise UserError(
            f"layer {layer.digest}: the archive does not end cleanly at byte {exc.offset}"
            f" of its tar stream: {exc.why}",
            hint="the layer is truncated or damaged and was not used; pull again, and if it"
            " persists the image itself is broken",
        ) from None
    except BadEntry as exc:
        raise UserError(
            f"layer {layer.digest}: entry {name!r} refused: {exc}",
            hint="the image is malformed or hostile; nothing was written outside its tree",
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        where = f" (byte {tar.fileobj.tell()} of its tar stream)" if tar is not None else ""
        raise UserError(
            f"layer {layer.digest}: corrupt or truncated archive at entry {name!r}{where}: {exc}",
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
