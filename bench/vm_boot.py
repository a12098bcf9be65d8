"""Create-to-SSH, a later SSH command and delete, timed through the real CLI."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "banger"), *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"create (to SSH)": [], "ssh -- true": [], "delete": []}
    for i in range(args.runs):
        name = f"bench-{i}"
        rows["create (to SSH)"].append(timed("vm", "create", "--name", name))
        rows["ssh -- true"].append(timed("vm", "ssh", name, "--", "true"))
        rows["delete"].append(timed("vm", "delete", name))
    for label, values in rows.items():
        print(
            f"{label:<16} median {statistics.median(values):6.2f} s"
            f"  min {min(values):6.2f}  max {max(values):6.2f}  (n={len(values)})"
        )


if __name__ == "__main__":
    main()
