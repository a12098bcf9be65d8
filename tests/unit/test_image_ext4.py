import os
import shutil
import subprocess
from pathlib import Path

import pytest

from banger.errors import UserError
from banger.image.ext4 import (
    GIB,
    MIB,
    allocated_bytes,
    dir_size_bytes,
    image_size,
    make_ext4,
    temp_name,
)

needs_mkfs = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")


def debugfs(disk: Path, command: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", command, str(disk)], capture_output=True, text=True, check=True
    ).stdout


def test_image_size_rule() -> None:
    assert image_size(0) == GIB
    assert image_size(800 * MIB) == GIB
    assert image_size(1000 * MIB) == 1250 * MIB
    assert image_size(1000 * MIB + 1) % MIB == 0
    assert image_size(1000 * MIB + 1) > 1250 * MIB


def test_dir_size_counts_hard_links_once_and_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"x" * 1000)
    os.link(tmp_path / "d" / "a", tmp_path / "b")
    big = tmp_path.parent / f"{tmp_path.name}-outside"
    big.write_bytes(b"y" * 100_000)
    (tmp_path / "link").symlink_to(big)
    dir_bytes = (tmp_path / "d").lstat().st_size
    link_bytes = (tmp_path / "link").lstat().st_size
    assert dir_size_bytes(tmp_path) == 1000 + dir_bytes + link_bytes


@needs_mkfs
def test_make_ext4_from_a_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_text("hi\n")
    out = tmp_path / "disk.ext4"
    make_ext4(src, out, 64 * MIB, label="banger-test")
    assert out.stat().st_size == 64 * MIB
    assert allocated_bytes(out) < 64 * MIB  # sparse
    assert debugfs(out, "cat /etc/hello") == "hi\n"
    assert (
        "banger-test"
        in subprocess.run(["dumpe2fs", "-h", str(out)], capture_output=True, text=True).stdout
    )
    assert not temp_name(out).exists()


@needs_mkfs
def test_make_ext4_empty_and_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "empty.ext4"
    make_ext4(None, out, 16 * MIB)
    assert out.stat().st_size == 16 * MIB
    with pytest.raises(UserError, match="too small"):
        make_ext4(None, tmp_path / "tiny.ext4", 1 * MIB)
    with pytest.raises(UserError, match="label"):
        make_ext4(None, tmp_path / "x.ext4", 16 * MIB, label="a-label-that-is-too-long")
    # a tree far bigger than the disk: mkfs fails, no partial file stays
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as handle:
        handle.write(os.urandom(20 * MIB))
    with pytest.raises(Exception, match=r"mkfs\.ext4"):
        make_ext4(src, tmp_path / "small.ext4", 10 * MIB)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.ext4", "src"]
