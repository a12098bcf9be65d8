"""The Python SDK's own overhead: banger.VM calls against the whole daemon API (no VM).

The daemon is the test one (tests/unit/sdk_daemon.py): every route real, the
VMM and root helper fakes, the agent banger-agent run on this host. So the
numbers are the SDK, the API and the agent link's share of a call, without
a guest's CPU: median commands.run round trip, small file write and read,
MB/s of a 32 MiB file each way, a command with 10 MB of stdout, create and kill.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agent_driver import build_agent
from tests.unit.sdk_daemon import IMAGE, SdkDaemon

import banger
from banger.api.models import Image, Kernel
from banger.config import Settings
from banger.store import Store
from banger.store.db import Database


def median_ms(work: Callable[[], object], runs: int = 30) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def store_for(settings: Settings) -> Store:
    store = Store(Database(settings.db_path))
    store.add_kernel(Kernel(name="k", version="6.1", dir="/k", vmlinuz="/k/v", initrd="/k/i",
                            source="bench", created_at="t"))  # fmt: skip
    store.add_image(Image(name=IMAGE, kernel="k", rootfs="/r.ext4", size_bytes=1,
                          source="bench", created_at="t"))  # fmt: skip
    return store


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="banger-bench-sdk-"))
    settings = Settings(home=tmp / "home", runtime_dir=tmp / "run")
    daemon = SdkDaemon(settings, store_for(settings), build_agent(), tmp).start()
    try:
        start = time.perf_counter()
        vm = banger.VM(image=IMAGE, settings=settings)
        print(f"VM() create: {(time.perf_counter() - start) * 1000:.0f} ms")
        print(
            f"commands.run(['true']): median {median_ms(lambda: vm.commands.run(['true'])):.1f} ms"
        )
        small = str(tmp / "small")
        wrote_ms = median_ms(lambda: vm.files.write(small, "x" * 4096))
        print(f"files.write 4 KiB: median {wrote_ms:.1f} ms")
        print(f"files.read 4 KiB: median {median_ms(lambda: vm.files.read(small)):.1f} ms")
        big, data = str(tmp / "big"), b"x" * (32 << 20)
        start = time.perf_counter()
        vm.files.write(big, data)
        wrote = time.perf_counter() - start
        start = time.perf_counter()
        assert vm.files.read_bytes(big) == data
        read = time.perf_counter() - start
        print(f"files 32 MiB: write {32 / wrote:.0f} MiB/s, read {32 / read:.0f} MiB/s")
        start = time.perf_counter()
        vm.commands.run("head -c 10000000 /dev/zero")
        print(f"commands.run with 10 MB of stdout: {(time.perf_counter() - start) * 1000:.0f} ms")
        start = time.perf_counter()
        vm.kill()
        print(f"kill(): {(time.perf_counter() - start) * 1000:.0f} ms")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
