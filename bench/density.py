"""Density: idle default VMs of 256 MiB side by side, and what bangerd costs meanwhile.

Boots ``--vms`` idle VMs (default 20, 1 vCPU, 256 MiB) of the default image
one after another through the real CLI, then measures: bangerd's RSS idle
(before) and with them all running, each VMM's proportional set size
(PSS, what the VM really takes from the host), `banger vm list` latency with
them running, and from the host's available memory and the median PSS how
many such VMs fit at once (an estimate, labelled as one; booting until the
host refuses would take hours under software emulation). Deletes them all.

    .venv/bin/python bench/density.py [--vms 20] [--runs 9] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
PREFIX = "bench-dense-"


def banger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "banger"), *args], check=True, capture_output=True, text=True)


def kib(pid: int, field: str, source: str = "status") -> int:
    """VmRSS from /proc/PID/status, or Pss from /proc/PID/smaps_rollup, in KiB."""
    for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def daemon_pid() -> int:
    return int(json.loads(banger("daemon", "status", "--json").stdout)["pid"])


def available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def list_ms(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        banger("vm", "list")
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    banger("vm", "list")  # a daemon, started if none runs
    pid = daemon_pid()
    idle_rss = kib(pid, "VmRSS") / 1024
    list_idle = list_ms(args.runs)
    names = [f"{PREFIX}{i}" for i in range(args.vms)]
    boots: list[float] = []
    try:
        for name in names:
            started = time.perf_counter()
            banger("vm", "create", "-q", "--name", name, "--memory", "256", "--vcpus", "1")
            boots.append(time.perf_counter() - started)
        time.sleep(10)  # let the last guests settle into idle
        busy_rss = kib(pid, "VmRSS") / 1024
        vms = json.loads(banger("vm", "list", "--json").stdout)
        pss = [kib(int(vm["pid"]), "Pss", "smaps_rollup") / 1024 for vm in vms
               if vm["name"].startswith(PREFIX) and vm.get("pid")]  # fmt: skip
        list_busy = list_ms(args.runs)
        free = available_mib()
    finally:
        subprocess.run([str(BIN / "banger"), "vm", "delete", "-q", *names], capture_output=True)
    fits = int(free / statistics.median(pss)) + len(pss) if pss else 0
    emit(
        Figures(
            bench="density",
            title=f"{args.vms} idle VMs of 256 MiB side by side",
            cases=[
                Case("VMM PSS per VM", pss, "MiB"),
                Case("bangerd RSS idle", [idle_rss], "MiB"),
                Case(f"bangerd RSS with {args.vms} VMs", [busy_rss], "MiB"),
                Case("vm list, no VM running", list_idle, "ms"),
                Case(f"vm list, {args.vms} running", list_busy, "ms"),
                Case("vm create (to ready), one after another", boots, "s"),
            ],
            ratios=[
                Ratio("VMs running at once (measured)", len(pss)),
                Ratio("VMs that fit at once (estimate: available memory / median PSS)", fits),
                Ratio(
                    f"vm list with {args.vms} running / with none",
                    statistics.median(list_busy) / statistics.median(list_idle),
                ),
            ],
            notes=[f"host memory available with {len(pss)} VMs running: {free} MiB"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
