"""`make bench`: every benchmark in turn, each writing docs/bench/NAME.json, then the page.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--quick] [--home DIR --bridge BR
        --subnet CIDR --dns-port N]

Benchmarks that boot VMs use the daemon of banger's environment (started on
demand, like the CLI) and the default image, pulled first when missing.
``--home`` and its friends point every benchmark at a daemon of its own
(BANGER_HOME, BANGER_BRIDGE, BANGER_SUBNET, BANGER_DNS_PORT, and a private
BANGER_RUNTIME_DIR, so the socket is not the user's), the way the e2e tests
do; that daemon is stopped and its bridge removed at the end. Run on an
otherwise idle machine: every figure is wall time. ``--quick`` takes fewer
runs (for trying the harness, not for figures to publish: give it ``--out``
a scratch directory, the page there lists only what it ran).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = ROOT / "docs"

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
    ("guest_exec", ["--runs", "5"], ["--runs", "2"], True),
    ("agent_link", ["--runs", "5"], ["--runs", "2", "--execs", "10", "--mb", "20"], False),
    ("vm_run", ["--runs", "5"], ["--runs", "2"], True),
    ("vm_run_warm", ["--warm", "--runs", "5"], ["--warm", "--runs", "2"], True),
    ("vm_boot", ["--runs", "5"], ["--runs", "2"], True),
    ("snapshot", ["--runs", "5"], ["--runs", "2", "--memory", "512"], True),
    ("forward", ["--runs", "5"], ["--runs", "2", "--size", "16"], True),
    ("sdk_calls", [], ["--runs", "10", "--big-runs", "2"], False),
]

# Figures a script writes under another name than its own (one script, two benchmarks).
SCRIPTS = {"vm_run_warm": "vm_run"}


def ensure_default_image() -> None:
    shown = subprocess.run([BIN / "banger", "image", "show", "debian-bookworm"],
                           capture_output=True)  # fmt: skip
    if shown.returncode != 0:
        subprocess.run([BIN / "banger", "image", "pull", "debian-bookworm"], check=True)


def own_daemon(args: argparse.Namespace) -> bool:
    """Point the benchmarks (our children) at the daemon ``--home`` names; True if one."""
    if args.home is None:
        return False
    runtime = Path(tempfile.mkdtemp(prefix="banger-bench-run-"))  # private: mode 0700
    os.environ.update(
        BANGER_HOME=str(args.home),
        BANGER_RUNTIME_DIR=str(runtime),
        BANGER_CONFIG=str(runtime / "no-config.toml"),  # none: the user's would apply
    )
    for flag, var in (("bridge", "BANGER_BRIDGE"), ("subnet", "BANGER_SUBNET"),
                      ("dns_port", "BANGER_DNS_PORT")):  # fmt: skip
        if getattr(args, flag) is not None:
            os.environ[var] = str(getattr(args, flag))
    return True


def stop_own_daemon() -> None:
    subprocess.run([BIN / "banger", "daemon", "stop"], check=False)
    bridge = os.environ.get("BANGER_BRIDGE")
    if bridge:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run these benchmarks only")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=DOCS, help="the page's directory (scratch for --quick)"
    )
    parser.add_argument("--home", type=Path, help="a daemon of the benchmarks' own: its home")
    parser.add_argument("--bridge", help="with --home: its bridge (BANGER_BRIDGE)")
    parser.add_argument("--subnet", help="with --home: its subnet (BANGER_SUBNET)")
    parser.add_argument("--dns-port", type=int, help="with --home: its DNS port")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b[0] in args.only]
    unknown = set(args.only or ()) - {b[0] for b in BENCHES}
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    own = own_daemon(args)
    failed = []
    try:
        if any(b[3] for b in chosen):
            ensure_default_image()
        for name, full, quick, _vm in chosen:
            print(f"== {name}", flush=True)
            started = time.monotonic()
            result = args.out / "bench" / f"{name}.json"
            script = ROOT / "bench" / f"{SCRIPTS.get(name, name)}.py"
            argv = [sys.executable, script, *(quick if args.quick else full), "--json", result]
            if subprocess.run(argv, cwd=ROOT).returncode != 0:
                failed.append(name)
            print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if own:
            stop_own_daemon()
    subprocess.run([sys.executable, ROOT / "bench" / "report.py", "--out", args.out], check=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
