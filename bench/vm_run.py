"""Cold `banger vm run -- true` on the default image: boot, first command, delete.

The number an agent sees first: from "I want a VM" to its first command's
answer. Also splits out how long the create took (the daemon's operation,
ended when the guest agent answers, or SSH for an image without it); the
cold runs pass ``--cold`` so a boot snapshot never stands in for a boot.
``--warm`` compares, in one run, `vm run -- true` restored from the image's
boot snapshot (warm start) with `vm run --cold -- true`, interleaved so both
see the same host (issue 12's target: at most 0.1x). Boots VMs: run it under
the shared VM lock.

    flock /tmp/banger-vm.lock .venv/bin/python bench/vm_run.py [--runs 5] [--warm] [--json FILE]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
# "[ 12.3s] stage: ..." lines of the CLI's progress on stderr.
STAGE = re.compile(r"^\[\s*([0-9.]+)s\] (\w+):", re.M)
# "NAME's agent answered after 4.2s" or "NAME answered SSH after 9.1s".
READY = re.compile(r"(agent answered|answered SSH) after ([0-9.]+)s")
# Issue 11's figure for this command before banger's guest channel; its target is half.
BEFORE_S = 16.4


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


def warm_vs_cold(runs: int, image: list[str], out: Path | None) -> None:
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
    emit(
        Figures(
            bench="vm_run_warm",
            title="Warm start: vm run -- true from the image's boot snapshot against a boot",
            cases=[
                Case("warm vm run -- true (restored, true, delete)", warm, "s"),
                Case("cold vm run --cold -- true (boot, true, delete)", cold, "s"),
            ],
            ratios=[Ratio("warm / cold", statistics.median(warm) / statistics.median(cold), 0.1)],
            notes=["warm and cold runs interleaved; the first run (it saves) is not counted"],
        ),
        out,
    )


def cold_runs(runs: int, image: list[str], out: Path | None) -> None:
    totals: list[float] = []
    ready: list[float] = []
    for i in range(runs):
        took, stderr = vm_run(f"bench-run-{i}", "--cold", *image)
        totals.append(took)
        stages = " ".join(f"{name}@{at}s" for at, name in STAGE.findall(stderr))
        answered = READY.search(stderr)
        if answered:
            ready.append(float(answered.group(2)))
        said = f"; {answered.group(1)} after {answered.group(2)}s" if answered else ""
        print(f"run {i}: {took:6.2f} s  ({stages}{said})")
    cases = [Case("vm run -- true (create, boot, true, delete)", totals, "s")]
    if ready:
        cases.append(Case("guest ready after (the daemon's own count)", ready, "s"))
    emit(
        Figures(
            bench="vm_run",
            title="Cold vm run -- true on the default image",
            cases=cases,
            ratios=[
                Ratio(
                    f"vm run -- true / {BEFORE_S} s before the guest channel (issue 11)",
                    statistics.median(totals) / BEFORE_S,
                    0.5,
                )
            ],
            notes=[f"{BEFORE_S} s: the issue's figure for this command, not measured in this run"],
        ),
        out,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="")
    parser.add_argument("--warm", action="store_true", help="warm start against --cold")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    image = ["--image", args.image] if args.image else []
    if args.warm:
        warm_vs_cold(args.runs, image, args.json)
    else:
        cold_runs(args.runs, image, args.json)


if __name__ == "__main__":
    main()
