"""Boot overhead: `banger vm run -- true` against the same VMM launched by hand.

The by-hand run is what banger itself adds nothing to: the QEMU command line
banger used for a VM (read from /proc while it ran), the same kernel,
initramfs and disks, a tap made by hand on the same bridge, and the first
command through the guest agent's virtio-serial socket with banger's
protocol client (no daemon, no CLI, no operation). The banger run is the
whole user-facing command: create (disks, tap, lease), boot, the first
command, delete. Pairs alternate, so drift on a shared machine hits both.
Root, and the default image. Boots VMs: run it under the shared VM lock. It
uses banger's environment (BANGER_HOME, BANGER_RUNTIME_DIR, BANGER_BRIDGE, ...
as the e2e tests set them): the daemon and bridge those name.

    .venv/bin/python bench/vm_boot_overhead.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

from banger.config import load_settings
from banger.guest.link import wait_ready

BIN = Path(sys.executable).parent
NAME = "bench-boot-hand"
# Ours alone, so two runs on one host (on their own bridges) never share a tap.
HAND_TAP = f"bgbh{os.getpid()}"[:15]


def banger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "banger"), *args], check=True, capture_output=True, text=True)


def banger_run(i: int) -> float:
    started = time.perf_counter()
    banger("vm", "run", "-q", "--cold", "--name", f"bench-boot-{i}", "--", "true")
    return time.perf_counter() - started


def recorded_argv() -> tuple[list[str], Path, str]:
    """banger's QEMU command line for NAME, its run directory and its bridge; NAME stopped."""
    subprocess.run([str(BIN / "banger"), "vm", "delete", "-q", NAME], capture_output=True)
    banger("vm", "create", "-q", "--name", NAME)
    vm = json.loads(banger("vm", "show", NAME, "--json").stdout)
    argv = Path(f"/proc/{vm['pid']}/cmdline").read_bytes().split(b"\0")[:-1]
    banger("vm", "stop", "-q", NAME)
    return [a.decode() for a in argv], Path(vm["dir"]), load_settings().bridge


def by_hand(argv: list[str], run_dir: Path, bridge: str) -> float:
    """Launch the recorded command line with a hand-made tap; seconds to `true`'s exit."""
    hand = []
    for arg in argv:
        if arg.startswith("tap,id=net0,"):
            arg = f"tap,id=net0,ifname={HAND_TAP},script=no,downscript=no"
        hand.append(arg)
    subprocess.run(["ip", "tuntap", "add", "dev", HAND_TAP, "mode", "tap"], check=True)
    try:
        subprocess.run(["ip", "link", "set", HAND_TAP, "master", bridge, "up"], check=True)
        (run_dir / "agent.sock").unlink(missing_ok=True)
        started = time.perf_counter()
        subprocess.run(hand, check=True)
        pid = int((run_dir / "vmm.pid").read_text())
        try:
            asyncio.run(first_command(run_dir / "agent.sock", pid))
            return time.perf_counter() - started
        finally:
            os.kill(pid, signal.SIGKILL)
            while Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
    finally:
        subprocess.run(["ip", "link", "del", HAND_TAP], check=False)


async def first_command(socket: Path, pid: int) -> None:
    link = await wait_ready(socket, timeout=300, alive=lambda: Path(f"/proc/{pid}").exists())
    try:
        done = await link.run(["true"])
        assert done.exited.status == 0
    finally:
        await link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the by-hand run makes its own tap")
    argv, run_dir, bridge = recorded_argv()
    hand: list[float] = []
    ours: list[float] = []
    try:
        for i in range(args.runs):
            hand.append(by_hand(argv, run_dir, bridge))
            ours.append(banger_run(i))
    finally:
        subprocess.run([str(BIN / "banger"), "vm", "delete", "-q", NAME], capture_output=True)
    pairs = [b / h for b, h in zip(ours, hand, strict=True)]
    emit(
        Figures(
            bench="vm_boot_overhead",
            title="vm run -- true against the same QEMU launched by hand",
            cases=[
                Case("by hand (QEMU + agent socket)", hand, "s"),
                Case("banger vm run -- true", ours, "s"),
            ],
            ratios=[
                Ratio("banger / by hand", statistics.median(ours) / statistics.median(hand), 1.10)
            ],
            notes=[
                f"pairs: {', '.join(f'{p:.2f}' for p in pairs)}",
                "by hand: banger's own QEMU command line, kernel, initramfs and disks",
            ],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
