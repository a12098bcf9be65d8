"""Deriving Firecracker's ELF vmlinux from a bzImage's compressed payload."""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from banger.errors import UserError
from banger.kernel.vmlinux import extract_vmlinux

ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64


def bzimage(payload: bytes, setup_sects: int = 3) -> bytes:
    """A minimal bzImage: setup sectors with the HdrS header, then the payload."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    offset = 0x40  # payload_offset is from the start of the protected-mode code
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    return bytes(setup) + b"\xcc" * offset + payload + b"tail"


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ)


@pytest.mark.parametrize("compress", [gzip.compress, xz], ids=["gzip", "xz"])
def test_the_payload_is_found_by_the_header_and_decompressed(tmp_path: Path, compress) -> None:
    src = tmp_path / "vmlinuz"
    src.write_bytes(bzimage(compress(ELF)))
    out = extract_vmlinux(src, tmp_path / "vmlinux")
    assert out.read_bytes() == ELF


@pytest.mark.skipif(shutil.which("lz4") is None, reason="lz4 is not installed")
def test_lz4_payloads_go_through_debians_lz4(tmp_path: Path) -> None:
    # Debian's cloud kernel is lz4-compressed (legacy frame, as the kernel makes it).
    packed = subprocess.run(["lz4", "-l", "-c"], input=ELF, capture_output=True, check=True)
    src = tmp_path / "vmlinuz"
    src.write_bytes(bzimage(packed.stdout))
    assert extract_vmlinux(src, tmp_path / "vmlinux").read_bytes() == ELF


def test_an_elf_kernel_is_kept_as_it_is(tmp_path: Path) -> None:
    src = tmp_path / "vmlinux-in"
    src.write_bytes(ELF)
    assert extract_vmlinux(src, tmp_path / "vmlinux").read_bytes() == ELF


def test_not_a_kernel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    src = tmp_path / "vmlinuz"
    src.write_bytes(b"MZ" + b"\0" * 4096)
    with pytest.raises(UserError, match="not an x86 bzImage"):
        extract_vmlinux(src, tmp_path / "vmlinux")
    src.write_bytes(bzimage(gzip.compress(b"not elf")))
    with pytest.raises(UserError, match="not an ELF kernel"):
        extract_vmlinux(src, tmp_path / "vmlinux")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinuz"]
