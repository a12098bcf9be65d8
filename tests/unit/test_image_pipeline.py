"""The image pipeline's finishing stage on small real trees, the disk read back with debugfs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from banger.errors import Conflict, UserError
from banger.guest import agent
from banger.image.pipeline import (
    Finished,
    MadeTree,
    adopt_disk,
    agent_config_of,
    finish,
    staging,
)
from banger.image.tree import save_work_seed

ROOT = os.geteuid() == 0
needs_e2fs = pytest.mark.skipif(
    shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None, reason="needs e2fsprogs"
)


def debugfs(disk: Path, request: str) -> str:
    done = subprocess.run(
        ["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=True
    )
    return done.stdout


def listing(disk: Path, directory: str) -> dict[str, int]:
    """Names in ``directory`` of the ext4 ``disk`` with their modes (debugfs ``ls -p``)."""
    out: dict[str, int] = {}
    for line in debugfs(disk, f"ls -p {directory}").splitlines():
        fields = line.strip("/").split("/")
        if len(fields) >= 5 and fields[4] not in (".", ".."):
            out[fields[4]] = int(fields[1], 8)
    return out


def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF fake")
    (root / agent.BUNDLE_MANIFEST).write_text('{"format": 1}\n')
    return root


def fill(tree: Path) -> None:
    """A tiny image without init: /etc, and a /root as careless as images come."""
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("img\n")
    home = tree / "root"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    (home / "suid").write_bytes(b"#!")
    (home / "suid").chmod(0o4755)
    (home / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(home / "fifo")
    (home / ".ssh").mkdir(mode=0o700)
    (home / "link").symlink_to("/etc/hostname")
    home.chmod(0o777)


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.got: list[Finished] = []

    def __call__(self, done: Finished) -> str:
        # What a real registration sees: the image complete in its final place.
        assert done.rootfs.is_file() and done.rootfs.parent.name == "img"
        if self.fail:
            raise Conflict("an image named 'img' already exists")
        self.got.append(done)
        return "registered"


@needs_e2fs
def test_finish_adds_the_agent_takes_the_seed_makes_the_ext4_and_registers(
    tmp_path: Path,
) -> None:
    images = tmp_path / "images"
    messages: list[str] = []
    register = Recorder()
    with staging(images / "img") as stage:
        fill(stage.tree)
        made = MadeTree(source="test:tiny", config={"cmd": ["sh"]})
        result = finish(
            stage,
            made,
            bundle=lambda: bundle(tmp_path),
            size_bytes=None,
            progress=messages.append,
            register=register,
        )
    assert result == "registered"
    [done] = register.got
    dest = images / "img"
    assert sorted(p.name for p in images.iterdir()) == ["img"]  # no staging left
    assert sorted(p.name for p in dest.iterdir()) == ["rootfs.ext4", "work-seed"]
    assert (done.rootfs, done.work_seed) == (dest / "rootfs.ext4", dest / "work-seed")
    assert done.size_bytes == 1 << 30 == done.rootfs.stat().st_size
    assert done.init == agent.AGENT_PATH  # no /sbin/init: the agent is PID 1
    assert done.config == {"cmd": ["sh"], "agent": "init", "channel": 0, "agent_build": ""}
    assert done.channel == 0  # the test bundle has no banger-agent: SSH only
    assert done.source == "test:tiny"
    # Only the owner reaches an image (a promoted VM's holds its /etc/shadow): its
    # directory is 0700; the disk is 0644 for the jail's hard link to it.
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(images.stat().st_mode) == 0o700

    disk = done.rootfs
    assert debugfs(disk, "cat /etc/hostname") == "img\n"
    banger = listing(disk, "/.banger")
    assert {"agent", "agent.conf", "image.json", "bin"} <= set(banger)
    assert stat.S_IMODE(banger["agent"]) == 0o755
    assert "BANGER_AGENT_MODE=init" in debugfs(disk, "cat /.banger/agent.conf")
    assert "notes.txt" in listing(disk, "/root")

    seed = done.work_seed
    assert seed is not None
    assert stat.S_IMODE(seed.stat().st_mode) == 0o700
    assert (seed / "notes.txt").read_text() == "mine"
    assert stat.S_IMODE((seed / "suid").stat().st_mode) == 0o755
    assert not (seed / "fifo").exists()
    assert os.readlink(seed / "link") == "/etc/hostname"
    assert stat.S_IMODE((seed / ".ssh").stat().st_mode) == 0o700
    assert any("ext4" in m for m in messages)


@needs_e2fs
def test_a_failed_registration_leaves_nothing(tmp_path: Path) -> None:
    images = tmp_path / "images"
    with pytest.raises(Conflict), staging(images / "img") as stage:
        fill(stage.tree)
        finish(
            stage,
            MadeTree(source="test:tiny"),
            bundle=lambda: bundle(tmp_path),
            size_bytes=None,
            progress=print,
            register=Recorder(fail=True),
        )
    assert list(images.iterdir()) == []


@needs_e2fs
def test_a_failure_midway_leaves_nothing(tmp_path: Path) -> None:
    images = tmp_path / "images"
    register = Recorder()
    with pytest.raises(UserError, match="too small"), staging(images / "img") as stage:
        fill(stage.tree)
        finish(
            stage,
            MadeTree(source="test:tiny"),
            bundle=lambda: bundle(tmp_path),
            size_bytes=16 << 20,  # the agent is in by now; this fails before the ext4
            progress=print,
            register=register,
        )
    assert list(images.iterdir()) == []
    assert register.got == []


def test_a_failing_source_leaves_nothing(tmp_path: Path) -> None:
    images = tmp_path / "images"
    with pytest.raises(RuntimeError), staging(images / "img") as stage:
        fill(stage.tree)
        (stage.scratch("layer.tar")).write_bytes(b"half")
        raise RuntimeError("the registry went away")
    assert list(images.iterdir()) == []


@needs_e2fs
def test_a_leftover_directory_of_an_unregistered_image_is_replaced(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "img").mkdir(parents=True)
    (images / "img" / "rootfs.ext4").write_bytes(b"half-written by a daemon that died")
    with staging(images / "img") as stage:
        fill(stage.tree)
        finish(
            stage,
            MadeTree(source="test:tiny"),
            bundle=lambda: bundle(tmp_path),
            size_bytes=None,
            progress=print,
            register=Recorder(),
        )
    assert (images / "img" / "rootfs.ext4").stat().st_size == 1 << 30


def test_a_careless_root_gives_a_0700_seed_without_setid_bits(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    fill(tree)
    (tree / "root/sgid-dir").mkdir()
    (tree / "root/sgid-dir").chmod(0o2775)
    (tree / "root/sgid-dir/prog").write_bytes(b"x")
    (tree / "root/sgid-dir/prog").chmod(0o6711)
    if ROOT:
        os.mknod(tree / "root/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1))
    out = tmp_path / "out"
    out.mkdir()
    seed = save_work_seed(tree, out)
    assert stat.S_IMODE(seed.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in seed.rglob("*")}
    assert modes["prog"] == 0o711
    assert modes["sgid-dir"] == 0o775
    assert not any(mode & (stat.S_ISUID | stat.S_ISGID) for mode in modes.values())
    assert "mem" not in modes and "fifo" not in modes


def test_no_root_directory_gives_an_empty_private_seed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "root").symlink_to("/etc")
    seed = save_work_seed(tree, tmp_path)
    assert list(seed.iterdir()) == []
    assert stat.S_IMODE(seed.stat().st_mode) == 0o700


@needs_e2fs
def test_adopt_disk_takes_an_ext4_in_place(tmp_path: Path) -> None:
    disk = tmp_path / "mine.ext4"
    disk.write_bytes(b"")
    os.truncate(disk, 16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    done = adopt_disk(disk, init="/sbin/myinit")
    assert (done.rootfs, done.work_seed, done.init) == (disk, None, "/sbin/myinit")
    assert done.source == f"file:{disk}" and done.size_bytes == 16 << 20


def test_adopt_disk_refuses_what_is_not_an_ext4(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(UserError, match="not an ext2/3/4 filesystem") as err:
        adopt_disk(junk)
    assert err.value.hint and "mkfs.ext4" in err.value.hint
    with pytest.raises(UserError, match="not a file"):
        adopt_disk(Path("relative.ext4"))


def test_a_promoted_image_keeps_the_agent_config_it_was_made_with() -> None:
    recorded = {"entrypoint": ["/app"], "cmd": ["--serve"], "env": ["A=1"], "user": "app"}
    config = agent_config_of({**recorded, "working_dir": "/srv", "agent": "init"})
    assert config == agent.AgentConfig(
        entrypoint=("/app",), cmd=("--serve",), env=("A=1",), workdir="/srv", user="app"
    )
