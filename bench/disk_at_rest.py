"""What a new VM's disks occupy before the guest writes anything, against mkfs's defaults.

Makes the overlay and work disk at their default sizes the way `vm create`
does (banger.disk), and the same two with plain `mkfs.ext4` defaults (what
banger did before: a 64 MiB journal each, written out, and the online-growth
reserve); prints the allocated MiB of each and the ratio. Nothing boots.

    .venv/bin/python bench/disk_at_rest.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from figures import Case, Figures, Ratio, emit

from banger.daemon.plan import DEFAULT_OVERLAY, DEFAULT_WORK_DISK
from banger.disk.overlay import create_overlay_disk
from banger.disk.work import create_work_disk
from banger.image.ext4 import MIB, allocated_bytes, make_ext4
from banger.units import parse_size


def banger_disks(root: Path) -> float:
    create_overlay_disk(root / "overlay.ext4", parse_size(DEFAULT_OVERLAY), {"k": b"key\n"})
    create_work_disk(root / "work.ext4", parse_size(DEFAULT_WORK_DISK), None)
    return sum(allocated_bytes(p) for p in root.iterdir()) / MIB


def default_disks(root: Path) -> float:
    make_ext4(None, root / "overlay.ext4", parse_size(DEFAULT_OVERLAY))
    make_ext4(None, root / "work.ext4", parse_size(DEFAULT_WORK_DISK))
    return sum(allocated_bytes(p) for p in root.iterdir()) / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes: dict[str, list[float]] = {"banger": [], "mkfs defaults": []}
    for _ in range(args.runs):
        for name, make in (("banger", banger_disks), ("mkfs defaults", default_disks)):
            with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
                sizes[name].append(make(Path(tmp)))
    cases = [Case(f"{name} (overlay + work disk)", v, "MiB") for name, v in sizes.items()]
    emit(
        Figures(
            bench="disk_at_rest",
            title="Disk a new VM allocates before the guest writes anything",
            cases=cases,
            ratios=[
                Ratio("banger MiB", cases[0].median, 16),
                Ratio("banger / mkfs defaults", cases[0].median / cases[1].median),
            ],
            notes=[f"default sizes: overlay {DEFAULT_OVERLAY}, work disk {DEFAULT_WORK_DISK}"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
