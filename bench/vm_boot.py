"""A VM's life through the real CLI, one command at a time: create, ssh, exec, delete.

`vm run` (bench/vm_run.py) times the whole; this splits it into the commands
a user types one after the other: `vm create --cold` (a boot, until the
agent answers), `vm create` restored from the image's boot snapshot (warm
start), `vm ssh NAME -- true` and `vm exec NAME -- true` on the VM just made,
and `vm delete`. Boots VMs: run it under the shared VM lock.

    flock /tmp/banger-vm.lock .venv/bin/python bench/vm_boot.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, emit

BIN = Path(sys.executable).parent


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "banger"), *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {
        "vm create --cold (boot, to the agent)": [],
        "vm create (warm start)": [],
        "vm ssh NAME -- true": [],
        "vm exec NAME -- true": [],
        "vm delete": [],
    }
    timed("vm", "create", "--name", "bench-boot-first", "-q")  # saves or finds the snapshot
    timed("vm", "delete", "bench-boot-first", "-q")
    for i in range(args.runs):
        for label, flags in (("vm create --cold (boot, to the agent)", ["--cold"]),
                             ("vm create (warm start)", [])):  # fmt: skip
            name = f"bench-boot-{i}{'-cold' if flags else ''}"
            rows[label].append(timed("vm", "create", "--name", name, "-q", *flags))
            if not flags:
                rows["vm ssh NAME -- true"].append(timed("vm", "ssh", name, "--", "true"))
                rows["vm exec NAME -- true"].append(timed("vm", "exec", name, "--", "true"))
            rows["vm delete"].append(timed("vm", "delete", name, "-q"))
        print(f"run {i}: " + "  ".join(f"{k.split(' (')[0]} {v[-1]:.2f}" for k, v in rows.items()))
    emit(
        Figures(
            bench="vm_boot",
            title="A VM's life one command at a time: create, ssh, exec, delete",
            cases=[Case(label, values, "s") for label, values in rows.items()],
            notes=[
                "ssh and exec run on the VM the warm create just made",
                "delete: of both VMs of each run",
            ],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
