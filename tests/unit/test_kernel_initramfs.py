"""The initramfs builder: archive layout, /init, modules and their dependencies."""

from __future__ import annotations

import gzip
import lzma
import stat
import struct
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.kernel import initramfs, modules

VERSION = "6.1.0-99-cloud-amd64"


def fake_module(depends: str, name: str = "x") -> bytes:
    """A minimal 64-bit ELF file with a .modinfo section, as a .ko carries."""
    modinfo = f"license=GPL\0depends={depends}\0name={name}\0".encode()
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    data_off = 64
    modinfo_off = data_off
    shstr_off = modinfo_off + len(modinfo)
    shoff = shstr_off + len(shstrtab)
    shoff += -shoff % 8
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)

    def section(name: int, offset: int, size: int) -> bytes:
        sh = bytearray(64)
        struct.pack_into("<I", sh, 0, name)
        struct.pack_into("<QQ", sh, 0x18, offset, size)
        return bytes(sh)

    body = modinfo + shstrtab
    body += b"\0" * (shoff - data_off - len(body))
    sections = section(0, 0, 0) + section(1, shstr_off, len(shstrtab))
    sections += section(11, modinfo_off, len(modinfo))
    return bytes(header) + body + sections


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """path -> (mode, data, (rdevmajor, rdevminor)) for a newc archive."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + i * 8 : pos + 14 + i * 8], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body_start = name_start + namesize
        body_start += -body_start % 4
        body = data[body_start : body_start + size]
        pos = body_start + size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body, (fields[9], fields[10]))


@pytest.fixture
def modules_root(tmp_path: Path) -> Path:
    tree = tmp_path / "modules" / VERSION
    deps = {
        "kernel/drivers/virtio/virtio_ring.ko": "",
        "kernel/drivers/virtio/virtio.ko": "virtio_ring",
        "kernel/drivers/virtio/virtio_mmio.ko": "virtio,virtio_ring",
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko": "",
        "kernel/drivers/virtio/virtio_pci.ko": "virtio_pci_modern_dev,virtio,virtio_ring",
        "kernel/drivers/block/virtio_blk.ko": "virtio,virtio_ring",
        "kernel/net/core/failover.ko": "",
        "kernel/drivers/net/net_failover.ko": "failover",
        "kernel/drivers/net/virtio_net.ko": "net_failover,virtio,virtio_ring",
        "kernel/drivers/char/virtio_console.ko": "virtio,virtio_ring",
        "kernel/net/vmw_vsock/vsock.ko": "",
        "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko": "vsock",
        "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko": (
            "vmw_vsock_virtio_transport_common,virtio,virtio_ring,vsock"
        ),
        "kernel/sound/unrelated.ko": "",
    }
    for rel, depends in deps.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_module(depends))
    # A compressed one, as some distributions ship them.
    overlay = tree / "kernel/fs/overlayfs/overlay.ko.xz"
    overlay.parent.mkdir(parents=True)
    overlay.write_bytes(lzma.compress(fake_module("", "overlay")))
    (tree / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return tmp_path / "modules"


@pytest.fixture
def busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"\x7fELF fake busybox")
    return path


def build(
    modules_root: Path, busybox: Path, tmp_path: Path
) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    out = tmp_path / "initramfs.img"
    initramfs.build_initramfs(modules_root, VERSION, busybox, out)
    return parse_newc(gzip.decompress(out.read_bytes()))


def test_init_is_an_executable_shell_script(
    modules_root: Path, busybox: Path, tmp_path: Path
) -> None:
    files = build(modules_root, busybox, tmp_path)
    mode, body, _ = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    assert body.startswith(b"#!/bin/sh\n")
    assert stat.S_ISLNK(files["bin/sh"][0]) and files["bin/sh"][1] == b"busybox"
    assert files["bin/busybox"][1] == busybox.read_bytes()


def test_console_device_node_is_there_for_the_kernel(
    modules_root: Path, busybox: Path, tmp_path: Path
) -> None:
    mode, _, rdev = build(modules_root, busybox, tmp_path)["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)


def test_modules_come_with_dependencies_in_load_order(
    modules_root: Path, busybox: Path, tmp_path: Path
) -> None:
    files = build(modules_root, busybox, tmp_path)
    order = files["lib/modules/load-order"][1].decode().split()
    names = [Path(p).name for p in order]
    for path in order:
        assert f"lib/modules/{path}" in files
    assert "failover.ko" in names and "vmw_vsock_virtio_transport_common.ko" in names
    assert (
        names.index("failover.ko") < names.index("net_failover.ko") < names.index("virtio_net.ko")
    )
    assert names.index("virtio_ring.ko") < names.index("virtio.ko") < names.index("virtio_blk.ko")
    assert "unrelated.ko" not in names
    assert len(names) == len(set(names))
    # The .xz module is stored decompressed, under the plain .ko name.
    overlay = files[f"lib/modules/{VERSION}/kernel/fs/overlayfs/overlay.ko"][1]
    assert modules.modinfo(overlay)["name"] == "overlay"


def test_archive_is_reproducible(modules_root: Path, busybox: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    initramfs.build_initramfs(modules_root, VERSION, busybox, first)
    initramfs.build_initramfs(modules_root, VERSION, busybox, second)
    assert first.read_bytes() == second.read_bytes()


def test_missing_driver_is_named(modules_root: Path, busybox: Path, tmp_path: Path) -> None:
    (modules_root / VERSION / "kernel/drivers/block/virtio_blk.ko").unlink()
    with pytest.raises(HostError, match="virtio_blk"):
        initramfs.build_initramfs(modules_root, VERSION, busybox, tmp_path / "x.img")
    assert not (tmp_path / "x.img").exists()


def test_wrong_kernel_version_is_a_host_error(
    modules_root: Path, busybox: Path, tmp_path: Path
) -> None:
    with pytest.raises(HostError, match=r"no modules for kernel 9\.9"):
        initramfs.build_initramfs(modules_root, "9.9", busybox, tmp_path / "x.img")


def test_modinfo_reads_depends() -> None:
    assert modules.modinfo(fake_module("a,b"))["depends"] == "a,b"
