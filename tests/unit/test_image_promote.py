"""``image promote``'s source: the guest's tar, unpacked into the pipeline's tree."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from banger.errors import VmmError
from banger.image.promote import guest_tar_command, promote_tree


def guest_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"./etc/hostname": b"dev\n", "./root/work.txt": b"w"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_guest_tar_becomes_a_tree_with_the_kernel_mount_points(tmp_path: Path) -> None:
    commands: list[str] = []

    def capture(command: str, out: Path) -> int:
        commands.append(command)
        out.write_bytes(guest_tar())
        return 0

    archive, tree = tmp_path / "root.tar", tmp_path / "tree"
    promote_tree(capture, tree, archive=archive, progress=lambda m: None)
    assert commands == [guest_tar_command()]
    assert (tree / "etc/hostname").read_bytes() == b"dev\n"
    assert (tree / "root/work.txt").read_bytes() == b"w"
    assert all((tree / d).is_dir() for d in ("proc", "sys", "dev", "run", "tmp", "mnt"))
    assert stat.S_IMODE((tree / "tmp").stat().st_mode) == 0o1777
    assert not archive.exists()


def test_a_failing_guest_tar_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(VmmError, match="exit 127") as err:
        promote_tree(lambda c, o: 127, tmp_path / "t", archive=tmp_path / "a", progress=print)
    assert err.value.hint and "tar" in err.value.hint
    assert not (tmp_path / "t").exists()
