"""What a killed daemon left half-written is removed at the next start, and nothing else."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from banger.config import load_settings
from banger.daemon.sweep import sweep


def test_sweep_removes_hidden_temporaries_and_unknown_vm_dirs_only(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    keep = [
        s.images_dir / "debian" / "rootfs.ext4",
        s.images_dir / "debian" / "work-seed" / ".profile",  # the image's own dotfile
        s.kernels_dir / "k" / "vmlinuz",
        s.vms_dir / "abc" / "overlay.ext4",
        s.cache_dir / "oci" / "blobs" / "sha256" / ("0" * 64),
        s.cache_dir / "flat" / "key" / "meta.json",
    ]
    gone = [
        s.images_dir / ".debian2.build-x1y2" / "tree" / "etc",
        s.kernels_dir / ".k2.abcd" / "vmlinuz",
        s.kernels_dir / "k" / "initramfs-1.img.tmp",
        s.kernels_dir / "k" / ".vmlinux.tmp",
        s.vms_dir / "abc" / ".overlay.ext4.seed-q" / "seed",
        s.vms_dir / "abc" / ".work.ext4.tmp-123",
        s.vms_dir / "dead" / "overlay.ext4",  # no VM row names it
        s.cache_dir / "oci" / "blobs" / "sha256" / ".tmp-abc",
        s.cache_dir / "agent" / ".bundle-xyz" / "bin",
        s.cache_dir / "flat" / ".0123456789ab-x" / "meta.json",
        s.images_dir / "half" / "rootfs.ext4",  # renamed into place, never registered
    ]
    for path in keep + gone:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    lines = sweep(s, [s.vms_dir / "abc"], image_names=["debian", "elsewhere"])
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in gone)
    assert not (s.vms_dir / "dead").exists() and not (s.images_dir / ".debian2.build-x1y2").exists()
    assert len(lines) == 11 and all(line.endswith("left by interrupted work") for line in lines)
    assert sweep(s, [s.vms_dir / "abc"], image_names=["debian", "elsewhere"]) == []


def test_a_dead_daemons_worker_is_stopped_before_its_files_go(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    tree = s.images_dir / ".deb.build-ab12" / "tree"
    tree.mkdir(parents=True)
    # Like an orphaned mkfs or debootstrap: its argv names the tree, another its cwd.
    by_argv = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(tree / "etc")]
    )
    by_cwd = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tree)
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(s.images_dir / ".deb.build-ab")]
    )
    try:
        lines = sweep(s, [], image_names=[])
        assert by_argv.wait(5) == -signal.SIGKILL and by_cwd.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None  # a path that only begins the same is not the same
        assert sum("killed pid" in line for line in lines) == 2
        assert not tree.parent.exists()
    finally:
        for child in (by_argv, by_cwd, bystander):
            child.kill()
            child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts")
def test_a_mount_left_in_a_build_tree_is_unmounted_never_deleted_through(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "precious").write_text("keep")
    point = s.images_dir / ".deb.build-cd34" / "tree" / "proc"
    point.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host), str(point)], check=True)
    try:
        sweep(s, [], image_names=[])
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True)
    assert (host / "precious").read_text() == "keep"
    assert not (s.images_dir / ".deb.build-cd34").exists()
