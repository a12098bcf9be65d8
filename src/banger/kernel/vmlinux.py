"""The uncompressed ELF ``vmlinux`` inside an x86 bzImage, for Firecracker.

Firecracker on x86_64 boots an ELF kernel, not a bzImage. The bzImage's
setup header says where its compressed payload lies (``setup_sects``,
``payload_offset``, ``payload_length``, boot protocol 2.08 and later); the
payload's magic says how it is compressed. gzip, xz, lzma and bzip2 are
undone in Python; zstd and lz4 by Debian's ``zstd`` and ``lz4`` tools.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import zlib
from pathlib import Path

from banger import proc
from banger.errors import HostError, UserError

ELF_MAGIC = b"\x7fELF"
_HDR_MAGIC = b"HdrS"
_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
)


def payload(image: bytes) -> tuple[str, bytes]:
    """(compression, compressed bytes) of a bzImage's kernel payload."""
    if len(image) < 0x250 or image[0x202:0x206] != _HDR_MAGIC:
        raise UserError("not an x86 bzImage (no HdrS setup header)")
    (version,) = struct.unpack_from("<H", image, 0x206)
    if version < 0x208:
        raise UserError(f"bzImage boot protocol {version >> 8}.{version & 0xFF} is older than 2.08")
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    data = image[start : start + length]
    for magic, kind in _MAGICS:
        if data.startswith(magic):
            return kind, data
    raise UserError(
        f"the bzImage's payload is compressed in a way banger does not know ({data[:4].hex()})"
    )


def decompress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)
    if kind == "bzip2":
        return bz2.BZ2Decompressor().decompress(data)
    tool = {"zstd": ["zstd", "-dcq"], "lz4": ["lz4", "-dcq"]}[kind]
    if proc.which(tool[0]) is None:
        raise HostError(
            f"this kernel is {kind}-compressed and {tool[0]} is not installed",
            hint=f"install it (Debian: apt-get install {tool[0]}), then try again",
        )
    # The payload carries trailing bytes (the size) the tools may warn about.
    return proc.run(tool, input=data, check=False, timeout=120).stdout


def extract_vmlinux(bzimage: Path, out: Path) -> Path:
    """Write the ELF kernel inside ``bzimage`` to ``out`` (atomically); return ``out``."""
    image = bzimage.read_bytes()
    if image.startswith(ELF_MAGIC):
        elf = image  # already an ELF vmlinux
    else:
        kind, data = payload(image)
        elf = decompress(kind, data)
        if not elf.startswith(ELF_MAGIC):
            raise UserError(
                f"the {kind} payload of {bzimage} is not an ELF kernel",
                hint="import an uncompressed vmlinux instead (`banger kernel import`)",
            )
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(elf)
    os.replace(tmp, out)
    return out
