import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from banger.disk.overlay import create_overlay_disk
from banger.errors import UserError
from banger.image.ext4 import GIB, MIB, allocated_bytes

needs_mkfs = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")


def inode(disk: Path, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"stat {path}", str(disk)], capture_output=True, text=True, check=True
    ).stdout


def mode_of(disk: Path, path: str) -> int:
    line = next(ln for ln in inode(disk, path).splitlines() if "Mode:" in ln)
    return int(line.split("Mode:")[1].split()[0], 8)


@needs_mkfs
def test_overlay_disk_is_sparse_and_holds_the_seed(tmp_path: Path) -> None:
    disk = tmp_path / "vm" / "overlay.ext4"
    seed = {"authorized_keys": b"ssh-ed25519 AAAA user\n", "ssh/host_ed25519": b"PRIVATE\n"}
    started = time.monotonic()
    create_overlay_disk(disk, 4 * GIB, seed)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"a 4 GiB overlay took {elapsed:.1f}s"
    assert disk.stat().st_size == 4 * GIB
    assert stat.S_IMODE(disk.stat().st_mode) == 0o600  # it holds a private key
    assert allocated_bytes(disk) < 256 * MIB
    assert [p.name for p in disk.parent.iterdir()] == ["overlay.ext4"]  # no staging left
    out = subprocess.run(
        ["debugfs", "-R", "cat /seed/ssh/host_ed25519", str(disk)], capture_output=True
    ).stdout
    assert out == b"PRIVATE\n"
    assert stat.S_IMODE(mode_of(disk, "/seed")) == 0o700
    assert stat.S_IMODE(mode_of(disk, "/seed/ssh")) == 0o700
    assert stat.S_IMODE(mode_of(disk, "/seed/authorized_keys")) == 0o600
    assert "User:     0   Group:     0" in inode(disk, "/seed/authorized_keys")


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a//b", "a/./b", "", 'a"b', "a b"])
def test_bad_seed_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError):
        create_overlay_disk(tmp_path / "o.ext4", 64 * MIB, {name: b""})
    assert list(tmp_path.iterdir()) == []


@needs_mkfs
def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        create_overlay_disk(tmp_path / "o.ext4", 1 * MIB, {"a": b"x"})
    assert list(tmp_path.iterdir()) == []
