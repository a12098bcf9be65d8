"""The cache of images already flattened from an OCI manifest."""

import os
from pathlib import Path

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
