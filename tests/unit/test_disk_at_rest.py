"""What a VM's disks cost before the guest writes anything (issue: disk cost at rest)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from banger.daemon.plan import DEFAULT_OVERLAY, DEFAULT_WORK_DISK
from banger.disk.overlay import create_overlay_disk
from banger.disk.work import create_work_disk, grow_work_disk
from banger.image.ext4 import GIB, MIB, allocated_bytes
from banger.units import parse_size

pytestmark = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")


def journal_kib(disk: Path) -> int:
    out = subprocess.run(["dumpe2fs", "-h", str(disk)], capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("Total journal blocks"))
    return int(line.split(":")[1]) * 4


def test_a_fresh_vm_s_disks_take_at_most_16_mib_and_keep_a_journal(tmp_path: Path) -> None:
    overlay, work = tmp_path / "overlay.ext4", tmp_path / "work.ext4"
    create_overlay_disk(overlay, parse_size(DEFAULT_OVERLAY), {"authorized_keys": b"k\n"})
    create_work_disk(work, parse_size(DEFAULT_WORK_DISK), None)
    total = allocated_bytes(overlay) + allocated_bytes(work)
    assert total <= 16 * MIB, f"{total / MIB:.1f} MiB allocated"
    # Crash safety stays: both disks are journalled, and clean.
    assert journal_kib(overlay) >= 4096 and journal_kib(work) >= 4096
    for disk in (overlay, work):
        assert subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True).returncode == 0


def test_the_work_disk_still_grows_unmounted(tmp_path: Path) -> None:
    work = tmp_path / "work.ext4"
    create_work_disk(work, 1 * GIB, None)
    assert grow_work_disk(work, 3 * GIB)
    out = subprocess.run(["dumpe2fs", "-h", str(work)], capture_output=True, text=True).stdout
    blocks = next(ln for ln in out.splitlines() if ln.startswith("Block count"))
    assert int(blocks.split(":")[1]) * 4096 == 3 * GIB
    assert subprocess.run(["e2fsck", "-fn", str(work)], capture_output=True).returncode == 0
