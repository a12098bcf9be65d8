"""Round trips and throughput of the guest agent's wire, with the agent run on this host.

banger-agent is built from this checkout (as the image bundle builds it)
and listens on a unix socket, so the numbers are the protocol's and the
two programs' own, without a VM or a virtio-serial ring in the way: an
upper bound on what a VM's channel can do. Prints the median (and p90) of
``exec true`` and of a ``load`` request (no process started), then MB/s of
``read_file`` and ``write_file`` of one file, median of the runs, and with
``--json FILE`` writes them for docs/benchmarks.md (bench/figures.py).

    .venv/bin/python bench/agent_link.py [--execs 50] [--mb 100] [--runs 5] [--json FILE]
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

from figures import Case, Figures, Ratio, emit

from banger.guest import agentbin
from banger.guest.link import AgentLink


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.2f} ms, p90 {p90(samples) * 1000:.2f} ms"


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


async def throughput(
    link: AgentLink, path: Path, size: int, runs: int
) -> tuple[list[float], list[float]]:
    reads: list[float] = []
    writes: list[float] = []
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
    return reads, writes


async def measure(socket: Path, work: Path, args: argparse.Namespace) -> Figures:
    async with await AgentLink.connect(socket, timeout=5) as link:
        execs, calls = await timed_round_trips(link, args.execs)
        print(f"exec true round trip ({args.execs} runs): {ms(execs)}")
        print(f"load request round trip ({args.execs} runs): {ms(calls)}")
        reads, writes = await throughput(link, work / "blob", args.mb << 20, args.runs)
    exec_ms = [t * 1000 for t in execs]
    load_ms = [t * 1000 for t in calls]
    return Figures(
        bench="agent_link",
        title="The guest agent's wire, banger-agent on this host (no VM)",
        cases=[
            Case("exec true round trip", exec_ms, "ms"),
            Case("load request round trip", load_ms, "ms"),
            Case(f"read_file {args.mb} MiB", reads, "MB/s"),
            Case(f"write_file {args.mb} MiB", writes, "MB/s"),
        ],
        ratios=[
            # A request that starts no process is the wire's own floor.
            Ratio("exec true / load request", statistics.median(execs) / statistics.median(calls))
        ],
        notes=[
            "an upper bound for a VM's channel: no guest CPU, no virtio-serial ring",
            f"p90: exec true {p90(exec_ms):.2f} ms, load request {p90(load_ms):.2f} ms",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
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
            figures = asyncio.run(measure(socket, work, args))
        finally:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
            log.close()
    emit(figures, args.json)


if __name__ == "__main__":
    main()
