"""The Debian image build, with a fake debootstrap on PATH that records its argv."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.image import debian
from banger.image.debian import build_debian_tree
from banger.image.pipeline import Finished, MadeTree, finish, staging
from banger.image.tree import mounts_below
from tests.unit.test_agent import fake_bundle

needs_mkfs = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")

FAKE_DEBOOTSTRAP = """#!/bin/sh
echo "$@" > "{log}"
[ -n "{fail}" ] && {{ mkdir -p "$4/etc"; echo "E: Couldn't download packages" >&2; exit 1; }}
mkdir -p "$4/etc/ssh" "$4/var/cache/apt/archives" "$4/root"
echo key > "$4/etc/ssh/ssh_host_ed25519_key"
echo hello > "$4/etc/motd"
head -c 100000 /dev/zero > "$4/var/cache/apt/archives/big_1.0_amd64.deb"
"""


Installer = Callable[..., Path]


@pytest.fixture
def fake_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installer:
    def install(fail: bool = False) -> Path:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        log = tmp_path / "argv.log"
        script = bindir / "debootstrap"
        script.write_text(FAKE_DEBOOTSTRAP.format(log=log, fail="yes" if fail else ""))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        monkeypatch.setattr(debian.os, "geteuid", lambda: 0)
        return log

    return install


def build(dest: Path, tmp_path: Path, progress: Callable[[str], None]) -> Finished:
    """The catalog source and the pipeline's finishing stage, as the image service runs them."""
    with staging(dest) as stage:
        build_debian_tree(stage.tree, mirror="http://mirror.example/debian", progress=progress)
        return finish(
            stage,
            MadeTree(source="catalog:debian-bookworm"),
            bundle=lambda: fake_bundle(tmp_path / "bundle"),
            size_bytes=None,
            progress=progress,
            register=lambda done: done,
        )


@needs_mkfs
def test_build_makes_a_customized_ext4_and_removes_the_tree(
    tmp_path: Path, fake_debootstrap: Installer
) -> None:
    log = fake_debootstrap()
    dest = tmp_path / "images" / "debian-bookworm"
    messages: list[str] = []
    done = build(dest, tmp_path, messages.append)
    argv = log.read_text().split()
    assert argv[0] == "--variant=minbase"
    assert "openssh-server" in argv[1] and "systemd-sysv" in argv[1]
    assert argv[2:] == ["bookworm", argv[3], "http://mirror.example/debian"]
    assert done.rootfs == dest / "rootfs.ext4"
    assert done.size_bytes == 1 << 30 == done.rootfs.stat().st_size
    assert "mirror.example" not in repr(done)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["debian-bookworm"]
    assert sorted(p.name for p in dest.iterdir()) == ["rootfs.ext4", "work-seed"]
    assert done.work_seed == dest / "work-seed" and done.work_seed.is_dir()
    assert messages and messages[0].startswith("debootstrap bookworm")
    assert any("GiB for" in m and "KiB" in m for m in messages)  # the .deb was cleaned first


@needs_mkfs
def test_failed_debootstrap_leaves_nothing(tmp_path: Path, fake_debootstrap: Installer) -> None:
    fake_debootstrap(fail=True)
    images = tmp_path / "images"
    with pytest.raises(HostError, match="Couldn't download"):
        build(images / "debian-bookworm", tmp_path, print)
    assert list(images.iterdir()) == []


def test_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    with pytest.raises(HostError) as err:
        build(tmp_path / "images" / "img", tmp_path, print)
    assert "root" in err.value.message
    assert err.value.hint
    assert list((tmp_path / "images").iterdir()) == []


def test_mounts_below_lists_deepest_first(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"proc {tree}/proc proc rw 0 0\n"
        f"sysfs {tree}/sys sysfs rw 0 0\n"
        f"devpts {tree}/dev/pts devpts rw 0 0\n"
        f"proc {tmp_path}/tother/proc proc rw 0 0\n"
    )
    found = mounts_below(tree, mounts)
    assert found[0] == tree / "dev/pts"
    assert sorted(found) == sorted([tree / "proc", tree / "sys", tree / "dev/pts"])
