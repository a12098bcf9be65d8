"""Median wall time of CLI invocations that must stay light."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CASES = [["--help"], ["vm", "--help"], ["version"]]


def main(runs: int = 15) -> None:
    for args in CASES:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([str(BIN / "banger"), *args], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        print(f"banger {' '.join(args):<12} median {statistics.median(times) * 1000:6.1f} ms")
    heavy = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import banger.cli.main"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = [m for m in ("httpx", "rich", "pydantic", "fastapi") if f" {m}\n" in heavy]
    print("heavy modules loaded by the CLI entry point:", ", ".join(loaded) or "none")


if __name__ == "__main__":
    main()
