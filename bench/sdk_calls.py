"""The Python SDK's own overhead: banger.VM calls against the whole daemon API (no VM).

The daemon is the test one (tests/unit/sdk_daemon.py): every route real, the
VMM and root helper fakes, the agent banger-agent run on this host. So the
numbers are the SDK, the API and the agent link's share of a call, without
a guest's CPU: median commands.run round trip, small file write and read,
MiB/s of a 32 MiB file each way, a command with 10 MB of stdout, create and kill.

    .venv/bin/python bench/sdk_calls.py [--runs 30] [--big-runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures import Case, Figures, Ratio, emit
from tests.agent_driver import build_agent
from tests.unit.sdk_daemon import IMAGE, SdkDaemon

import banger
from banger.api.models import Image, Kernel
from banger.config import Settings
from banger.store import Store
from banger.store.db import Database


def seconds(work: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def ms(work: Callable[[], object], runs: int) -> list[float]:
    return [t * 1000 for t in seconds(work, runs)]


def store_for(settings: Settings) -> Store:
    store = Store(Database(settings.db_path))
    store.add_kernel(Kernel(name="k", version="6.1", dir="/k", vmlinuz="/k/v", initrd="/k/i",
                            source="bench", created_at="t"))  # fmt: skip
    store.add_image(Image(name=IMAGE, kernel="k", rootfs="/r.ext4", size_bytes=1,
                          source="bench", created_at="t"))  # fmt: skip
    return store


def measure(settings: Settings, tmp: Path, runs: int, big_runs: int) -> list[Case]:
    start = time.perf_counter()
    vm = banger.VM(image=IMAGE, settings=settings)
    created = (time.perf_counter() - start) * 1000
    small = str(tmp / "small")
    cases = [
        Case("VM() create", [created], "ms"),
        Case("commands.run(['true'])", ms(lambda: vm.commands.run(["true"]), runs), "ms"),
        Case("files.write 4 KiB", ms(lambda: vm.files.write(small, "x" * 4096), runs), "ms"),
        Case("files.read 4 KiB", ms(lambda: vm.files.read(small), runs), "ms"),
    ]
    big, data = str(tmp / "big"), b"x" * (32 << 20)
    wrote = seconds(lambda: vm.files.write(big, data), big_runs)
    read = seconds(lambda: vm.files.read_bytes(big), big_runs)
    assert vm.files.read_bytes(big) == data
    stdout = ms(lambda: vm.commands.run("head -c 10000000 /dev/zero"), big_runs)
    start = time.perf_counter()
    vm.kill()
    killed = (time.perf_counter() - start) * 1000
    return [
        *cases,
        Case("files.write 32 MiB", [32 / t for t in wrote], "MiB/s"),
        Case("files.read 32 MiB", [32 / t for t in read], "MiB/s"),
        Case("commands.run, 10 MB of stdout", stdout, "ms"),
        Case("kill()", [killed], "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each small call")
    parser.add_argument("--big-runs", type=int, default=5, help="runs of each 32/10 MB one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="banger-bench-sdk-"))
    settings = Settings(home=tmp / "home", runtime_dir=tmp / "run")
    daemon = SdkDaemon(settings, store_for(settings), build_agent(), tmp).start()
    try:
        cases = measure(settings, tmp, args.runs, args.big_runs)
    finally:
        daemon.stop()
    run, read = cases[1], cases[3]
    emit(
        Figures(
            bench="sdk_calls",
            title="Python SDK calls against the whole daemon API (fake VMM, agent on this host)",
            cases=cases,
            ratios=[
                # A 4 KiB read starts no process in the guest: the call's own floor.
                Ratio("commands.run / files.read 4 KiB", run.median / read.median),
            ],
            notes=["no guest: the SDK's, the API's and the agent link's share of a call"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
