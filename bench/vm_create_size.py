"""`banger vm create --no-start` from a 1 GiB and an 8 GiB image: the image is never copied.

Registers two ext4 images of those sizes (made by mkfs, sparse, same small
tree) with the running daemon, times `vm create --no-start` + `vm delete`
of each in turn through the real CLI, and prints the ratio of the medians
(target: at most 1.1). Leaves nothing: the VMs, images and files go.

    .venv/bin/python bench/vm_create_size.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

from banger.image.ext4 import GIB, make_ext4

BIN = Path(sys.executable).parent
SIZES = {"1 GiB image": 1 * GIB, "8 GiB image": 8 * GIB}


def banger(*args: str) -> None:
    subprocess.run([str(BIN / "banger"), *args], check=True, capture_output=True)


def timed(*args: str) -> float:
    started = time.perf_counter()
    banger(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in SIZES}
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-size-") as tmp:
        tree = Path(tmp) / "tree"
        for d in ("etc", "root", "bin"):
            (tree / d).mkdir(parents=True)
        (tree / "etc" / "hostname").write_text("bench\n")
        images = []
        for i, (name, size) in enumerate(SIZES.items()):
            disk = Path(tmp) / f"image{i}.ext4"
            make_ext4(tree, disk, size)
            images.append((name, f"bench-size-{i}"))
            banger("image", "register", f"bench-size-{i}", str(disk))
        try:
            for run in range(args.runs):
                for name, image in images:
                    vm = f"bench-size-vm-{run}"
                    samples[name].append(
                        timed("vm", "create", "--no-start", "-q", "--name", vm, "--image", image)
                    )
                    banger("vm", "delete", "-q", vm)
        finally:
            for _name, image in images:
                subprocess.run([str(BIN / "banger"), "image", "delete", image], capture_output=True)
    small, big = (statistics.median(samples[n]) for n in SIZES)
    emit(
        Figures(
            bench="vm_create_size",
            title="vm create --no-start against the image's size",
            cases=[Case(name, s, "s") for name, s in samples.items()],
            ratios=[Ratio("8 GiB / 1 GiB", big / small, 1.1)],
            notes=["the image is shared read-only; only the VM's overlay and work disk are made"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
