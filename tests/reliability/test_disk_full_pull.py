"""A disk that fills during an image pull: one clear error, nothing half-made.

banger's home sits on a small loop-mounted ext4 that really fills, at each
step of an OCI pull from a registry on 127.0.0.1: while a blob downloads,
while the layers are flattened into a tree, and while the ext4 is written.
The daemon's services are wired as bangerd wires them (the VMM and the agent
bundle at their seams) and driven through its HTTP API in process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from banger.api.models import Kernel
from banger.config import load_settings
from banger.guest import bundle as bundle_module
from banger.store import Database, Store
from tests.e2e import registry as reg
from tests.e2e.leakprobe import temporaries
from tests.reliability.test_disk_full import _api, _wait, loop_home
from tests.unit.test_agent import fake_bundle

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device"),
]

MIB = 1 << 20


def _file(name: str, data: Callable[[], bytes]) -> Callable[[Path], None]:
    def edit(rootfs: Path) -> None:
        (rootfs / "data").mkdir(exist_ok=True)
        (rootfs / "data" / name).write_bytes(data())

    return edit


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Three images, each sized to fill the small home at another step."""
    reason = reg.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("full-pull")
    layout = work / "layout"
    images = {
        # 12 MiB that do not compress: the download itself does not fit.
        "download": [_file("noise", lambda: os.urandom(12 * MIB))],
        # 40 MiB of text that gzip makes tiny: it fits as a blob, not as a tree.
        "flatten": [_file("text", lambda: b"banger fills the disk\n" * (40 * MIB // 22))],
        # 5 MiB that do not compress: the blob and the tree fit; the ext4 beside them does not.
        "ext4": [_file("small", lambda: os.urandom(5 * MIB))],
    }
    for tag, edits in images.items():
        reg.umoci_image(layout, tag, edits)
    with reg.registry(work / "registry") as registry:
        yield {tag: registry.push(layout, tag, "full/pull") for tag in images}


# The step that filled the disk, as the daemon's log tells the cause.
CAUSES = {
    "download": "[Errno 28] No space left on device",
    "flatten": "disk full while writing entry",
    "ext4": "`mkfs.ext4 ",
}


@pytest.mark.parametrize(("step", "home_mib"), [("download", 8), ("flatten", 24), ("ext4", 16)])
def test_a_pull_that_fills_the_disk_says_so_and_keeps_nothing(
    pushed: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    step: str,
    home_mib: int,
) -> None:
    agent_bundle = fake_bundle(tmp_path / "bundle")  # outside the small disk
    monkeypatch.setattr(bundle_module, "build_agent_bundle", lambda *a, **k: agent_bundle)
    with loop_home(tmp_path, home_mib * MIB) as home:
        settings = load_settings(home=home)
        store = Store(Database(settings.db_path))
        store.add_kernel(Kernel(name="k", version="6.1", dir=str(tmp_path), source="test",
                                vmlinuz=str(tmp_path / "vmlinuz"), initrd=str(tmp_path / "i"),
                                created_at="t"))  # fmt: skip
        (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
        used = shutil.disk_usage(home).used
        client = _api(settings, store, tmp_path)
        name = f"full-{step}"
        started = client.post(
            "/images/pull", json={"ref": pushed[step], "name": name, "kernel": "k"}
        )
        assert started.status_code == 202, started.text
        op = _wait(client, started.json()["id"])
        assert op["state"] == "failed", op
        error = op["error"]
        assert isinstance(error, dict)
        # One error, naming the disk that filled and what stopped.
        assert error["message"] == (
            f"the disk holding {home} is full: pulling image {name} stopped,"
            " and nothing of it was kept"
        )
        logged = [r.getMessage() for r in caplog.records if "image.pull" in r.getMessage()]
        assert len(logged) == 1 and f"kept ({CAUSES[step]}" in logged[0], logged
        assert "df -h" in str(error["hint"]) and "banger image cache prune" in str(error["hint"])
        # Nothing half-made: no image, no directory, no temporary, and the space is
        # back but for the blobs that arrived whole (kept for the next pull).
        assert store.list_images() == []
        assert list(settings.images_dir.iterdir()) == []
        assert temporaries(home) == []
        blobs = sum(p.stat().st_blocks * 512 for p in (home / "cache").rglob("*") if p.is_file())
        assert shutil.disk_usage(home).used - used - blobs < MIB
        store.db.close()
