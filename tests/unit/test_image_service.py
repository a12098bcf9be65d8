"""The daemon's image service over a real store: pick the source, run it, finish."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.api.models import ImagePull, ImageRegister
from banger.daemon.images import ImageService
from banger.daemon.kernels import KernelService
from banger.daemon.operations import Progress
from banger.errors import Conflict, UserError
from banger.guest import bundle as bundle_module
from banger.image import debian
from tests.e2e import registry as reg
from tests.unit.fakes import FakeVmm
from tests.unit.test_agent import fake_bundle
from tests.unit.test_image_build import FAKE_DEBOOTSTRAP

needs_mkfs = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")


class Quiet(Progress):
    def __init__(self) -> None:
        self.stages: list[str] = []

    def stage(self, stage: str, message: str = "") -> None:
        self.stages.append(stage)

    def info(self, message: str) -> None:
        pass


@pytest.fixture
def images(settings, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageService:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "debootstrap"
    script.write_text(FAKE_DEBOOTSTRAP.format(log=tmp_path / "argv.log", fail=""))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setattr(debian.os, "geteuid", lambda: 0)
    agent_bundle = fake_bundle(tmp_path / "bundle")
    monkeypatch.setattr(bundle_module, "build_agent_bundle", lambda *a, **k: agent_bundle)
    settings = dataclasses.replace(settings, debian_mirror="http://mirror.example/debian")
    return ImageService(
        settings=settings,
        store=store,
        kernels=KernelService(settings, store),
        vmm=FakeVmm(),
        user_key=tmp_path / "id_ed25519",
    )


@needs_mkfs
def test_a_catalog_pull_goes_through_the_pipeline_into_the_store(images: ImageService) -> None:
    progress = Quiet()
    image = images.pull(ImagePull(ref="debian-bookworm", name="deb", kernel="k"), progress)
    assert progress.stages == ["build"]
    assert images.store.get_image("deb") == image
    assert image.source == "catalog:debian-bookworm"
    assert image.config == {"agent": "init", "channel": 0, "agent_build": ""}  # no init, no agent
    assert Path(image.rootfs).stat().st_size == 1 << 30
    assert Path(image.work_seed).is_dir()
    assert sorted(p.name for p in images.settings.images_dir.iterdir()) == ["deb"]


@needs_mkfs
def test_a_name_taken_while_building_registers_nothing(
    images: ImageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = debian.customize_tree

    def customize_and_race(tree: Path) -> None:
        real(tree)
        # Someone registers the same name while this build runs.
        disk = images.settings.home / "other.ext4"
        with disk.open("wb") as handle:
            handle.truncate(16 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
        images.register(ImageRegister(name="deb", rootfs=str(disk), kernel="k"))

    monkeypatch.setattr(debian, "customize_tree", customize_and_race)
    with pytest.raises(Conflict):
        images.pull(ImagePull(ref="debian-bookworm", name="deb", kernel="k"), Quiet())
    assert images.store.get_image("deb").source.startswith("file:")
    assert list(images.settings.images_dir.iterdir()) == []


def test_two_makes_of_one_name_do_not_overlap(images: ImageService) -> None:
    with images._making("deb"), pytest.raises(Conflict, match="already being made"):
        images.pull(ImagePull(ref="debian-bookworm", name="deb", kernel="k"), Quiet())


def test_register_refuses_a_file_that_is_not_ext4(images: ImageService, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    before = images.store.list_images()
    with pytest.raises(UserError, match="not an ext2/3/4"):
        images.register(ImageRegister(name="junk", rootfs=str(junk), kernel="k"))
    assert images.store.list_images() == before


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = reg.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("tiny")

    def edit(rootfs: Path) -> None:
        (rootfs / "root").mkdir(exist_ok=True)
        (rootfs / "root" / ".profile").write_text("export TINY=1\n")

    reg.umoci_image(work / "layout", "1", [edit])
    with reg.registry(work / "registry") as registry:
        yield registry.push(work / "layout", "1", "unit/tiny")


@needs_mkfs
def test_a_re_pull_links_the_disk_made_before_as_a_stage_of_its_own(
    images: ImageService, tiny_image: str, tmp_path: Path
) -> None:
    first, second = Quiet(), Quiet()
    one = images.pull(ImagePull(ref=tiny_image, name="one", kernel="k"), first)
    two = images.pull(ImagePull(ref=tiny_image, name="two", kernel="k"), second)
    assert first.stages == ["pull"]
    assert second.stages == ["pull", "reuse"]
    assert os.stat(one.rootfs).st_ino == os.stat(two.rootfs).st_ino
    assert (one.source, one.init, one.config) == (two.source, two.init, two.config)
    # The cache moved to another filesystem cannot be linked from: flattened again.
    flat = images.settings.cache_dir / "flat"
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        shutil.move(flat, elsewhere / "flat")
        flat.symlink_to(elsewhere / "flat")
        third = Quiet()
        three = images.pull(ImagePull(ref=tiny_image, name="three", kernel="k"), third)
        assert third.stages == ["pull", "reuse", "pull"]
        assert os.stat(three.rootfs).st_ino != os.stat(one.rootfs).st_ino
        assert Path(three.work_seed, ".profile").read_text() == "export TINY=1\n"
    finally:
        shutil.rmtree(elsewhere)
    assert sorted(p.name for p in images.settings.images_dir.iterdir()) == ["one", "three", "two"]
