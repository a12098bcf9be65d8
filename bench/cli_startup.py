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
    # The floor first: an empty interpreter and `import click`, which every
    # command pays before banger does anything. All cases in turn, round after
    # round, so a burst of load on a shared machine falls on all of them alike.
    plan = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("import click", [sys.executable, "-c", "import click"]),
    ]
    plan += [(f"banger {' '.join(args)}", [str(BIN / "banger"), *args]) for args in CASES]
    samples: dict[str, list[float]] = {label: [] for label, _ in plan}
    for _ in range(opts.runs):
        for label, argv in plan:
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            samples[label].append((time.perf_counter() - start) * 1000)
    cases = [Case(label, times, "ms") for label, times in samples.items()]
    help_case = cases[2]
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
            ratios=[
                Ratio("banger --help median ms", help_case.median, 60),
                Ratio("banger --help - import click, ms", help_case.median - cases[1].median),
            ],
            notes=[
                f"heavy modules loaded by the CLI entry point: {', '.join(loaded) or 'none'}",
                "python -c pass and import click: the floor every command pays, to scale by",
            ],
        ),
        opts.json,
    )


if __name__ == "__main__":
    main()
