"""The cache of images already flattened from an OCI manifest."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from banger.config import load_settings
from banger.daemon.sweep import sweep
from banger.image.flatcache import FlatCache, flat_key


def _image_dir(root: Path) -> Path:
    image = root / "image"
    (image / "work-seed").mkdir(parents=True, mode=0o700)
    (image / "work-seed" / ".profile").write_text("x\n")
    (image / "rootfs.ext4").write_bytes(b"\0" * 4096)
    return image


def test_key_changes_with_everything_that_shapes_the_disk(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle-abc"
    base = flat_key("sha256:" + "a" * 64, bundle, b"agent", None)
    assert base == flat_key("sha256:" + "a" * 64, bundle, b"agent", None)
    assert base != flat_key("sha256:" + "b" * 64, bundle, b"agent", None)
    assert base != flat_key("sha256:" + "a" * 64, tmp_path / "bundle-def", b"agent", None)
    assert base != flat_key("sha256:" + "a" * 64, bundle, b"agent v2", None)
    assert base != flat_key("sha256:" + "a" * 64, bundle, b"agent", 2 << 30)


def test_kept_image_is_linked_not_copied_and_pruned_once_unused(tmp_path: Path) -> None:
    cache = FlatCache(tmp_path / "flat")
    made = _image_dir(tmp_path / "stage")
    assert cache.lookup("k") is None
    cache.keep("k", made, size_bytes=4096, init="/.banger/agent", config={"agent": "init"})
    flat = cache.lookup("k")
    assert flat is not None and flat.init == "/.banger/agent" and flat.config == {"agent": "init"}
    dest = tmp_path / "images" / "two"
    dest.parent.mkdir()
    assert cache.link_into(flat, dest)
    assert os.stat(dest / "rootfs.ext4").st_ino == os.stat(made / "rootfs.ext4").st_ino
    assert (dest / "work-seed" / ".profile").read_text() == "x\n"
    assert oct(os.stat(dest / "work-seed").st_mode & 0o777) == "0o700"
    assert cache.prune(dry_run=False) == (0, 0)  # two images still use it
    for image in (made, dest):
        (image / "rootfs.ext4").unlink()
    _freed, entries = cache.prune(dry_run=False)
    assert entries == 1 and cache.lookup("k") is None


def test_a_broken_entry_is_a_miss(tmp_path: Path) -> None:
    cache = FlatCache(tmp_path / "flat")
    (tmp_path / "flat" / "k").mkdir(parents=True)
    (tmp_path / "flat" / "k" / "meta.json").write_text("{not json")
    assert cache.lookup("k") is None


def test_an_entry_whose_disk_is_gone_is_a_miss(tmp_path: Path) -> None:
    # What a prune of an older banger left when killed after the disk, before the meta.
    cache = FlatCache(tmp_path / "flat")
    cache.keep("k", _image_dir(tmp_path / "stage"), size_bytes=4096, init=None, config={})
    (tmp_path / "flat" / "k" / "image" / "rootfs.ext4").unlink()
    assert cache.lookup("k") is None


def test_a_prune_killed_midway_leaves_no_entry_that_looks_whole(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    root = settings.cache_dir / "flat"
    made = _image_dir(tmp_path / "stage")
    # Enough files that removing them lasts a while (a checkout kept in /root, say).
    for n in range(3000):
        (made / "work-seed" / f"f{n}").write_text("x")
    FlatCache(root).keep("k", made, size_bytes=4096, init=None, config={})
    shutil.rmtree(made)  # unused now: the prune removes it
    prune = "import sys; from pathlib import Path; from banger.image.flatcache import FlatCache;"
    child = subprocess.Popen(
        [sys.executable, "-c", f"{prune} FlatCache(Path(sys.argv[1])).prune(dry_run=False)", root]
    )
    try:
        deadline = time.monotonic() + 30
        while (root / "k").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        child.kill()
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the prune ended before the kill"
    assert FlatCache(root).lookup("k") is None
    left = [p.name for p in root.iterdir()]
    assert len(left) == 1 and left[0].startswith("."), left  # killed inside the removal
    # A pull keeping its image meanwhile is no entry to prune.
    assert FlatCache(root).prune(dry_run=False) == (0, 0)
    assert [line.split(",")[0] for line in sweep(settings, [], image_names=[])] == [
        f"removed {root / left[0]}"
    ]
    assert list(root.iterdir()) == []
