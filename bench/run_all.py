"""`make bench`: every benchmark in turn, each writing docs/bench/NAME.json, then the page.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--quick]

Benchmarks that boot VMs use the running daemon (started on demand, like
the CLI) and the default image, pulled first when missing. Run on an
otherwise idle machine: every figure is wall time. ``--quick`` takes fewer
runs (for trying the harness, not for figures to publish).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "docs" / "bench"

# (name, script arguments for a full run, for a quick one, boots VMs)
BENCHES: list[tuple[str, list[str], list[str], bool]] = [
    ("cli_startup", ["--runs", "15"], ["--runs", "5"], False),
    ("cli_client", ["--runs", "15"], ["--runs", "5"], False),
    ("dns_latency", ["--runs", "2000"], ["--runs", "200"], False),
    ("disk_at_rest", ["--runs", "5"], ["--runs", "2"], False),
    ("oci_pull", ["--runs", "5"], ["--runs", "2"], False),
    ("vm_boot_overhead", ["--runs", "5"], ["--runs", "2"], True),
    ("vm_create_size", ["--runs", "9"], ["--runs", "3"], True),
    ("workspace", ["--runs", "5"], ["--runs", "2"], True),
    ("density", ["--vms", "20"], ["--vms", "3", "--runs", "3"], True),
]


def ensure_default_image() -> None:
    shown = subprocess.run([BIN / "banger", "image", "show", "debian-bookworm"],
                           capture_output=True)  # fmt: skip
    if shown.returncode != 0:
        subprocess.run([BIN / "banger", "image", "pull", "debian-bookworm"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run these benchmarks only")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b[0] in args.only]
    unknown = set(args.only or ()) - {b[0] for b in BENCHES}
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if any(b[3] for b in chosen):
        ensure_default_image()
    failed = []
    for name, full, quick, _vm in chosen:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        argv = [sys.executable, ROOT / "bench" / f"{name}.py", *(quick if args.quick else full),
                "--json", OUT / f"{name}.json"]  # fmt: skip
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    subprocess.run(
        [sys.executable, ROOT / "bench" / "report.py", "--out", ROOT / "docs"], check=True
    )
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
