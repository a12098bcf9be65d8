"""Round trips and throughput of the guest agent's wire, with the agent run on this host.

banger-agent is built from this checkout (as the image bundle builds it)
and listens on a unix socket, so the numbers are the protocol's and the
two programs' own, without a VM or a virtio-serial ring in the way: an
upper bound on what a VM's channel can do. Prints the median (and p90) of
``exec true`` and of a ``load`` request (no process started), then MB/s of
``read_file`` and ``write_file`` of one file, median of the runs.

    .venv/bin/python bench/agent_link.py [--execs 50] [--mb 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from banger.guest import agentbin
from banger.guest.link import AgentLink


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms"


async def timed_round_trips(link: AgentLink, count: int) -> tuple[list[float], list[float]]:
    for _ in range(5):  # warm the agent's and our own first-use paths
        await link.run(["true"])
    execs, calls = [], []
    for _ in range(count):
        began = time.perf_counter()
        done = await link.run(["true"])
        execs.append(time.perf_counter() - began)
        assert done.exited.code == 0
        began = time.perf_counter()
        await link.load()
        calls.append(time.perf_counter() - began)
    return execs, calls


async def throughput(link: AgentLink, path: Path, size: int, runs: int) -> tuple[float, float]:
    reads, writes = [], []
    data = os.urandom(size)
    for _ in range(runs):
        began = time.perf_counter()
        await link.write_file(str(path), data, 0o600)
        writes.append(size / (time.perf_counter() - began) / 1e6)
        began = time.perf_counter()
        got = 0
        async for chunk in link.read_file(str(path)):
            got += len(chunk)
        reads.append(size / (time.perf_counter() - began) / 1e6)
        assert got == size
    return statistics.median(reads), statistics.median(writes)


async def measure(socket: Path, work: Path, args: argparse.Namespace) -> None:
    async with await AgentLink.connect(socket, timeout=5) as link:
        execs, calls = await timed_round_trips(link, args.execs)
        print(f"exec true round trip ({args.execs} runs): {ms(execs)}")
        print(f"load request round trip ({args.execs} runs): {ms(calls)}")
        read, write = await throughput(link, work / "blob", args.mb << 20, args.runs)
        print(f"read_file {args.mb} MiB: {read:.0f} MB/s (median of {args.runs})")
        print(f"write_file {args.mb} MiB: {write:.0f} MB/s (median of {args.runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / f"banger-bench-agent-{os.getuid()}"
    binary = agentbin.build_agent(cache)
    with tempfile.TemporaryDirectory(prefix="banger-bench-link-") as tmp:
        work = Path(tmp)
        socket = work / "agent.sock"
        log = (work / "agent.log").open("wb")
        agent = subprocess.Popen(
            [binary, "--listen", f"unix:{socket}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10
            while b"channel up" not in (work / "agent.log").read_bytes():
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("banger-agent did not come up")
                time.sleep(0.01)
            asyncio.run(measure(socket, work, args))
        finally:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
            log.close()


if __name__ == "__main__":
    main()
