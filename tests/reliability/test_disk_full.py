"""A disk that fills in the middle of the work: one clear error, nothing half-made.

banger's home sits on a small loop-mounted ext4 (a real filesystem that
really fills; tmpfs would not, mkfs's zeroing allocates nothing there);
the daemon's services are wired as bangerd wires them, with the VMM and the
root helper at their seams, and driven through its HTTP API in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from banger.api.models import Image, Kernel, VmState
from banger.config import Settings, load_settings
from banger.daemon.app import create_app
from banger.daemon.services import wire
from banger.store import Database, Store
from banger.vmm.accel import AccelChoice
from tests.e2e.leakprobe import temporaries
from tests.unit.fakes import FakeVmm, RecordingHelper

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device"),
]


@contextlib.contextmanager
def loop_home(tmp_path: Path, size: int) -> Iterator[Path]:
    """An ext4 of ``size`` bytes, loop-mounted, as banger's home."""
    home, backing = tmp_path / "home", tmp_path / "small.ext4"
    home.mkdir()
    with open(backing, "wb") as disk:
        disk.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(backing)], check=True)
    subprocess.run(["mount", "-o", "loop", str(backing), str(home)], check=True)
    try:
        yield home
    finally:
        if subprocess.run(["umount", str(home)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB ext4, loop-mounted."""
    with loop_home(tmp_path, 8 << 20) as home:
        yield home


def _with_kernel(home: Path, tmp_path: Path) -> tuple[Settings, Store, Path]:
    """Settings and a store in ``home`` holding kernel "k", whose files (and an image's
    rootfs) lie outside it, in the directory returned."""
    settings = load_settings(home=home)
    store = Store(Database(settings.db_path))
    outside = tmp_path / "kernel"
    outside.mkdir()
    for name in ("vmlinuz", "initrd", "rootfs.ext4"):
        (outside / name).write_bytes(b"\0" * 4096)
    store.add_kernel(Kernel(name="k", version="6.1", dir=str(outside), source="test",
                            vmlinuz=str(outside / "vmlinuz"), initrd=str(outside / "initrd"),
                            created_at="t"))  # fmt: skip
    return settings, store, outside


def _api(settings: Settings, store: Store, tmp: Path, vmm: FakeVmm | None = None) -> httpx.Client:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    services = wire(
        settings,
        store=store,
        vmm=vmm or FakeVmm(),
        accel=AccelChoice("tcg", "test"),
        helper=RecordingHelper(),
        user_key=tmp / "id_ed25519",
        loop=loop,
    )
    app = create_app(services, asyncio.Event())

    def call(request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.request(
                    request.method, request.url.path, content=request.content,
                    headers=request.headers,
                )  # fmt: skip
                return httpx.Response(response.status_code, content=response.content,
                                      headers=response.headers)  # fmt: skip

        return asyncio.run_coroutine_threadsafe(go(), loop).result(60)

    return httpx.Client(transport=httpx.MockTransport(call), base_url="http://t")


def _wait(client: httpx.Client, op_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        op = client.get(f"/operations/{op_id}").json()
        if op["state"] in ("succeeded", "failed"):
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} did not end")


def test_a_create_that_fills_the_disk_says_so_and_keeps_nothing(
    small_home: Path, tmp_path: Path
) -> None:
    settings, store, outside = _with_kernel(small_home, tmp_path)
    # The image's /root holds more than the small disk: copying it into the
    # VM's work disk fills it.
    seed = outside / "work-seed"
    seed.mkdir()
    (seed / "big.bin").write_bytes(os.urandom(12 << 20))
    store.add_image(Image(name="img", kernel="k", rootfs=str(outside / "rootfs.ext4"),
                          size_bytes=4096, source="test", created_at="t",
                          work_seed=str(seed)))  # fmt: skip
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    client = _api(settings, store, tmp_path)
    started = client.post("/vms", json={"name": "full", "image": "img", "no_start": True})
    assert started.status_code in (200, 202), started.text
    op = _wait(client, started.json()["id"])
    assert op["state"] == "failed"
    error = op["error"]
    assert isinstance(error, dict)
    assert error["message"].startswith(f"the disk holding {small_home} is full")  # type: ignore[union-attr]
    assert "is full: creating VM full stopped, and nothing of it was kept" in error["message"]
    assert "df -h" in error["hint"]  # type: ignore[operator]
    # Nothing half-made: no VM row, no lease, no directory, no temporary.
    assert store.list_vms() == [] and store.lease_count() == 0
    assert list(settings.vms_dir.iterdir()) == []
    assert temporaries(small_home) == []
    store.db.close()


class RunningVmm(FakeVmm):
    """A VMM whose VMs run (a pid answers) once the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.running: set[Path] = set()

    def pid(self, run_dir: Path) -> int | None:
        return 4242 if run_dir in self.running else None


def test_a_snapshot_that_fills_the_disk_says_so_and_keeps_nothing(
    small_home: Path, tmp_path: Path
) -> None:
    settings, store, outside = _with_kernel(small_home, tmp_path)
    # channel 1: an image with banger's agent, the only kind a snapshot is taken of.
    store.add_image(Image(name="img", kernel="k", rootfs=str(outside / "rootfs.ext4"),
                          size_bytes=4096, source="test", created_at="t", channel=1))  # fmt: skip
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    vmm = RunningVmm()
    client = _api(settings, store, tmp_path, vmm)
    spec = {"name": "snap", "image": "img", "no_start": True, "system_overlay_size": "64M",
            "work_disk_size": "64M"}  # fmt: skip
    made = client.post("/vms", json=spec)
    assert _wait(client, made.json()["id"])["state"] == "succeeded"
    vm = store.get_vm("snap")
    # As if it ran and its guest wrote more than half of what is left: a copy
    # of its disks no longer fits.
    vmm.running.add(Path(vm.dir))
    store.set_vm_state(vm.id, VmState.RUNNING)
    free = os.statvfs(small_home).f_bavail * os.statvfs(small_home).f_frsize
    with open(Path(vm.dir) / "overlay.ext4", "r+b") as disk:
        disk.seek(32 << 20)
        disk.write(os.urandom(free * 6 // 10))
    free_kib = os.statvfs(small_home).f_bfree * os.statvfs(small_home).f_frsize >> 10

    started = client.post("/vms/snap/snapshots", json={"name": "s1"})
    assert started.status_code == 202, started.text
    op = _wait(client, started.json()["id"])
    assert op["state"] == "failed", op
    error = op["error"]
    assert isinstance(error, dict)
    assert error["message"] == (
        f"the disk holding {small_home} is full: taking a snapshot of VM snap stopped,"
        " and nothing of it was kept"
    )
    assert "df -h" in error["hint"]  # type: ignore[operator]
    # Nothing half-made: no snapshot row or directory, the space is back, the VM runs on.
    assert store.list_snapshots() == []
    assert list(settings.snapshots_dir.iterdir()) == []
    # (64 KiB of slack: the store records the operation.)
    after_kib = os.statvfs(small_home).f_bfree * os.statvfs(small_home).f_frsize >> 10
    assert after_kib >= free_kib - 64
    assert store.get_vm("snap").state == VmState.RUNNING
    store.db.close()
