"""`banger vm run -- true` on the default image: boot, first command, delete.

The number an agent sees first: from "I want a VM" to its first command's
answer. Also splits out how long the create took (the daemon's operation,
ended when the guest agent answers, or SSH for an image without it).
``--warm`` compares, in one run, `vm run -- true` restored from the image's
boot snapshot (warm start) with `vm run --cold -- true`, interleaved so
both see the same host; the issue's target is a ratio of at most 0.1x.
Boots VMs: run it under the shared VM lock.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
# "[ 12.3s] stage: ..." lines of the CLI's progress on stderr.
STAGE = re.compile(r"^\[\s*([0-9.]+)s\] (\w+):", re.M)
# "NAME's agent answered after 4.2s" or "NAME answered SSH after 9.1s".
READY = re.compile(r"(agent answered|answered SSH) after ([0-9.]+)s")


def vm_run(name: str, *flags: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "banger"), "vm", "run", "--name", name, *flags, "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{name} failed ({result.returncode}):\n{result.stderr}")
    return took, result.stderr


def warm_vs_cold(runs: int, image: list[str]) -> None:
    # The first run saves the boot snapshot (or finds one): not counted.
    took, said = vm_run("bench-warm-first", *image)
    print(f"first run {took:6.2f} s ({'saved' if 'saved image' in said else 'restored'})")
    warm: list[float] = []
    cold: list[float] = []
    for i in range(runs):
        took, said = vm_run(f"bench-warm-{i}", *image)
        if "boot snapshot" not in said:
            sys.exit(f"run {i} was not restored from the boot snapshot:\n{said}")
        warm.append(took)
        took, _ = vm_run(f"bench-cold-{i}", "--cold", *image)
        cold.append(took)
        print(f"run {i}: warm {warm[-1]:6.2f} s  cold {cold[-1]:6.2f} s")
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"vm run -- true   warm median {w:6.2f} s  min {min(warm):6.2f}  max {max(warm):6.2f}")
    print(f"vm run --cold    cold median {c:6.2f} s  min {min(cold):6.2f}  max {max(cold):6.2f}")
    print(f"warm/cold ratio  {w / c:.2f}x  (n={runs} each; includes delete; target <= 0.1x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="")
    parser.add_argument("--warm", action="store_true", help="warm start against --cold")
    args = parser.parse_args()
    image = ["--image", args.image] if args.image else []
    if args.warm:
        warm_vs_cold(args.runs, image)
        return
    totals: list[float] = []
    for i in range(args.runs):
        # A real boot each time, whether or not the image has a boot snapshot.
        took, stderr = vm_run(f"bench-run-{i}", "--cold", *image)
        totals.append(took)
        stages = " ".join(f"{name}@{at}s" for at, name in STAGE.findall(stderr))
        ready = READY.search(stderr)
        said = f"; {ready.group(1)} after {ready.group(2)}s" if ready else ""
        print(f"run {i}: {took:6.2f} s  ({stages}{said})")
    print(
        f"vm run --cold -- true   median {statistics.median(totals):6.2f} s"
        f"  min {min(totals):6.2f}  max {max(totals):6.2f}  (n={len(totals)}; includes delete)"
    )


if __name__ == "__main__":
    main()
