"""Median wall time of CLI invocations that must stay light."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
CASES = [["--help"], ["vm", "--help"], ["version"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    # The state `make venv` leaves (scripts/install-venv compiles src/banger),
    # brought up to date with sources edited since: where Python may not write
    # bytecode (PYTHONDONTWRITEBYTECODE), stale files would be compiled on every run.
    import banger

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(banger.__file__).parent)], check=True
    )
    cases = []
    for args in CASES:
        times = []
        for _ in range(opts.runs):
            start = time.perf_counter()
            subprocess.run([str(BIN / "banger"), *args], capture_output=True, check=True)
            times.append((time.perf_counter() - start) * 1000)
        cases.append(Case(f"banger {' '.join(args)}", times, "ms"))
    heavy = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import banger.cli.main"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = [m for m in ("httpx", "rich", "pydantic", "fastapi") if f" {m}\n" in heavy]
    emit(
        Figures(
            bench="cli_startup",
            title="CLI start-up without a daemon",
            cases=cases,
            ratios=[Ratio("banger --help median ms", cases[0].median, 60)],
            notes=[f"heavy modules loaded by the CLI entry point: {', '.join(loaded) or 'none'}"],
        ),
        opts.json,
    )


if __name__ == "__main__":
    main()
