"""Snapshots: their size, restore time against memory size, restored vs cold `vm run`.

For each memory size (512 MiB, 2 GiB and 4 GiB by default) it boots one VM,
snapshots it right after boot (the size of a fresh VM's snapshot on disk),
then restores it ``--runs`` times with ``vm create --from-snapshot`` (the
restore stage's own time from its progress line, and the whole create) and
deletes each restored VM. Then ``vm run -- true`` cold against ``vm run
--from-snapshot SNAP -- true`` on the default memory size: the ratio the
issue asks for (<= 0.1x). Then ``vm fork --count 4`` of a running VM with
``vm exec -- true`` in each fork against ``--count 1`` and one exec (the
issue asks for <= 2x). Medians are printed, and with ``--json FILE`` written
for docs/benchmarks.md (bench/figures.py).

    flock /tmp/banger-vm.lock .venv/bin/python bench/snapshot.py [--runs 5] [--memory 512 2048] \
        [--json FILE]
    ... bench/snapshot.py --memory 2048 --skip-sizes     only the two ratios

It uses banger's environment (BANGER_HOME, BANGER_BRIDGE, ... as the e2e
tests set them) and an image that exists (debian-bookworm by default).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
RESTORED = re.compile(r"restored in ([0-9.]+)s")


def banger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, text=True, check=check, timeout=1800
    )


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    result = banger(*args)
    return time.monotonic() - start, result


def one_size(memory: int, runs: int, image: str) -> dict[str, Any]:
    name, snap = f"snb-{memory}", f"snb-{memory}-boot"
    banger("vm", "create", "--name", name, "--image", image, "--vcpus", "1",
           "--memory", str(memory), "--work-disk-size", "1G", "-q")  # fmt: skip
    try:
        took, _ = timed("vm", "snapshot", "create", name, snap, "-q")
        shown = json.loads(banger("vm", "snapshot", "show", snap, "--json").stdout)
        banger("vm", "delete", name, "-q")
        restores, creates = [], []
        for n in range(runs):
            copy = f"{name}-r{n}"
            whole, result = timed("vm", "create", "--name", copy, "--from-snapshot", snap)
            banger("vm", "delete", copy, "-q")
            match = RESTORED.search(result.stderr)
            if match is None:
                sys.exit(f"{copy}: no 'restored in' line in vm create's progress:\n{result.stderr}")
            restores.append(float(match.group(1)))
            creates.append(whole)
        return {
            "memory_mib": memory,
            "snapshot_mib": round(shown["size_bytes"] / (1 << 20), 1),
            "snapshot_seconds": round(took, 2),
            "restore_seconds": restores,
            "create_from_snapshot_seconds": [round(c, 2) for c in creates],
        }
    finally:
        banger("vm", "delete", name, "-q", check=False)
        banger("vm", "snapshot", "delete", snap, check=False)


def run_vs_cold(runs: int, image: str, memory: int) -> dict[str, list[float]]:
    base, snap = "snb-run", "snb-run-boot"
    banger("vm", "create", "--name", base, "--image", image, "--vcpus", "1",
           "--memory", str(memory), "--work-disk-size", "1G", "-q")  # fmt: skip
    try:
        banger("vm", "snapshot", "create", base, snap, "-q")
        banger("vm", "delete", base, "-q")
        cold, warm = [], []
        for _ in range(runs):
            cold.append(timed("vm", "run", "-q", "--cold", "--image", image, "--vcpus", "1",
                              "--memory", str(memory), "--work-disk-size", "1G",
                              "--", "true")[0])  # fmt: skip
            warm.append(timed("vm", "run", "-q", "--from-snapshot", snap, "--", "true")[0])
        return {"cold_run_seconds": cold, "restored_run_seconds": warm}
    finally:
        banger("vm", "delete", base, "-q", check=False)
        banger("vm", "snapshot", "delete", snap, check=False)


def fork_vs_one(runs: int, image: str, memory: int, count: int) -> dict[str, list[float]]:
    base = "snb-fork"
    banger("vm", "create", "--name", base, "--image", image, "--vcpus", "1",
           "--memory", str(memory), "--work-disk-size", "1G", "-q")  # fmt: skip
    try:
        one: list[float] = []
        many: list[float] = []
        for n in range(runs):
            for copies, into in ((1, one), (count, many)):
                names = [f"snb-f{n}-{copies}-{i}" for i in range(copies)]
                start = time.monotonic()
                banger("vm", "fork", base, "-q", *(a for nm in names for a in ("--name", nm)))
                execs = [
                    subprocess.Popen([str(BIN / "banger"), "vm", "exec", nm, "--", "true"])
                    for nm in names
                ]
                if any(e.wait(timeout=600) != 0 for e in execs):
                    raise RuntimeError(f"vm exec failed in one of {names}")
                into.append(round(time.monotonic() - start, 2))
                banger("vm", "delete", *names, "-q")
        return {"fork_1_seconds": one, f"fork_{count}_seconds": many}
    finally:
        listed = json.loads(banger("vm", "list", "--json").stdout)
        stale = [vm["name"] for vm in listed if vm["name"].startswith("snb-f")]
        banger("vm", "delete", base, *stale, "-q", check=False)


def size_cases(size: dict[str, Any]) -> list[Case]:
    memory = size["memory_mib"]
    return [
        Case(f"snapshot size, {memory} MiB VM", [size["snapshot_mib"]], "MiB"),
        Case(f"restore stage, {memory} MiB", size["restore_seconds"], "s"),
        Case(f"create --from-snapshot, {memory} MiB", size["create_from_snapshot_seconds"], "s"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--image", default="debian-bookworm")
    parser.add_argument("--skip-run", action="store_true", help="no cold vs restored vm run")
    parser.add_argument("--skip-sizes", action="store_true", help="no per-memory-size restores")
    parser.add_argument("--skip-fork", action="store_true", help="no fork x4 against one")
    parser.add_argument("--fork-count", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases: list[Case] = []
    ratios: list[Ratio] = []
    sizes = []
    for memory in [] if args.skip_sizes else args.memory:
        size = one_size(memory, args.runs, args.image)
        sizes.append(size)
        cases += size_cases(size)
        ratios.append(Ratio(f"snapshot size / memory, {memory} MiB", size["snapshot_mib"] / memory))
        print(f"{memory} MiB: snapshot {size['snapshot_mib']} MiB in {size['snapshot_seconds']} s")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        ratios.append(
            Ratio(
                f"restore {large['memory_mib']} MiB / {small['memory_mib']} MiB",
                statistics.median(large["restore_seconds"])
                / statistics.median(small["restore_seconds"]),
            )
        )
    if not args.skip_run:
        runs = run_vs_cold(args.runs, args.image, args.memory[0])
        cold, warm = runs["cold_run_seconds"], runs["restored_run_seconds"]
        cases += [
            Case("vm run -- true, cold", cold, "s"),
            Case("vm run --from-snapshot -- true", warm, "s"),
        ]
        ratios.append(
            Ratio("restored / cold vm run", statistics.median(warm) / statistics.median(cold), 0.1)
        )
    if not args.skip_fork:
        forks = fork_vs_one(args.runs, args.image, args.memory[0], args.fork_count)
        one, many = forks["fork_1_seconds"], forks[f"fork_{args.fork_count}_seconds"]
        cases += [
            Case("vm fork --count 1 + exec true", one, "s"),
            Case(f"vm fork --count {args.fork_count} + exec true in each", many, "s"),
        ]
        ratios.append(
            Ratio(
                f"fork x{args.fork_count} / one fork",
                statistics.median(many) / statistics.median(one),
                2.0,
            )
        )
    emit(
        Figures(
            bench="snapshot",
            title="Snapshots: size, restore against memory, restored against cold vm run, forks",
            cases=cases,
            ratios=ratios,
            notes=[
                "each snapshot taken right after boot; "
                + ", ".join(
                    f"{s['memory_mib']} MiB taken in {s['snapshot_seconds']} s" for s in sizes
                ),
                f"vm run pairs alternate cold and restored, at {args.memory[0]} MiB",
            ],
        ),
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
