"""Kernel module lookup: which ``.ko`` files a set of drivers needs, in load order.

The Debian package ships no ``modules.dep`` (depmod runs at install time), so
dependencies come from each module's own ``.modinfo`` ELF section.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Iterable
from pathlib import Path

from banger import proc
from banger.errors import HostError

_SUFFIXES = (".ko", ".ko.xz", ".ko.zst")


def module_name(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    # The kernel treats dashes and underscores in module names alike.
    return name.replace("-", "_")


def read_module(path: Path) -> bytes:
    """The uncompressed ELF bytes of a module, whatever its compression."""
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.zst"):
        return proc.run(["zstd", "-dcq", path]).stdout
    return path.read_bytes()


def _section(elf: bytes, wanted: str) -> bytes | None:
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name = struct.unpack_from("<I", elf, base)[0]
        offset, size = struct.unpack_from("<QQ", elf, base + 0x18)
        return name, offset, size

    _, names_off, _ = header(shstrndx)
    for index in range(shnum):
        name_off, offset, size = header(index)
        end = elf.index(b"\0", names_off + name_off)
        if elf[names_off + name_off : end].decode() == wanted:
            return elf[offset : offset + size]
    return None


def modinfo(elf: bytes) -> dict[str, str]:
    """The ``key=value`` pairs of a module's ``.modinfo`` section (last one wins)."""
    section = _section(elf, ".modinfo") or b""
    info: dict[str, str] = {}
    for entry in section.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            info[key] = value
    return info


def index_modules(tree: Path) -> dict[str, Path]:
    """Map every module name under ``tree`` to its file."""
    found: dict[str, Path] = {}
    for path in sorted(tree.rglob("*.ko*")):
        if path.name.endswith(_SUFFIXES):
            found.setdefault(module_name(path), path)
    return found


def resolve(wanted: Iterable[str], index: dict[str, Path]) -> list[Path]:
    """The files for ``wanted`` plus their dependencies, each after what it needs.

    Names missing from ``index`` are assumed built into the kernel, which is
    how Debian builds ext4, for example.
    """
    order: list[Path] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done" or name not in index:
            return
        if state.get(name) == "visiting":
            raise HostError(
                "kernel modules depend on each other in a cycle: " + " -> ".join((*chain, name)),
                hint="use a different kernel package",
            )
        state[name] = "visiting"
        info = modinfo(read_module(index[name]))
        for dep in filter(None, info.get("depends", "").split(",")):
            visit(dep.replace("-", "_"), (*chain, name))
        state[name] = "done"
        order.append(index[name])

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order
