"""Cold `banger vm run -- true` on the default image: boot, first command, delete.

The number an agent sees first: from "I want a VM" to its first command's
answer. Also splits out how long the create took (the daemon's operation,
ended when the guest agent answers, or SSH for an image without it). Boots
VMs: run it under the shared VM lock.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="")
    args = parser.parse_args()
    image = ["--image", args.image] if args.image else []
    totals: list[float] = []
    for i in range(args.runs):
        start = time.perf_counter()
        result = subprocess.run(
            [str(BIN / "banger"), "vm", "run", "--name", f"bench-run-{i}", *image, "--", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"run {i} failed ({result.returncode}):\n{result.stderr}")
        totals.append(took)
        stages = " ".join(f"{name}@{at}s" for at, name in STAGE.findall(result.stderr))
        ready = READY.search(result.stderr)
        said = f"; {ready.group(1)} after {ready.group(2)}s" if ready else ""
        print(f"run {i}: {took:6.2f} s  ({stages}{said})")
    print(
        f"vm run -- true   median {statistics.median(totals):6.2f} s"
        f"  min {min(totals):6.2f}  max {max(totals):6.2f}  (n={len(totals)}; includes delete)"
    )


if __name__ == "__main__":
    main()
