"""Median round trip of the DNS responder over UDP on loopback, per kind of answer.

A ``.vm`` answer, a REFUSED one, and one forwarded to a test resolver on
another loopback port (the responder's own cost plus one upstream exchange).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message
from figures import Case, Figures, emit
from tests.dns_upstream import NAME, FakeUpstream

from banger.net.dns import DnsResponder

ALLOWED = "127.0.0.2"


def round_trips(port: int, wire: bytes, source: str, runs: int) -> list[float]:
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        for _ in range(runs):
            start = time.perf_counter()
            sock.sendto(wire, ("127.0.0.1", port))
            sock.recv(4096)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = args.runs
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    upstream = FakeUpstream()
    run(upstream.start("127.0.0.1"))
    responder = DnsResponder((f"127.0.0.1:{upstream.port}",))
    run(responder.start("127.0.0.1", 0, {"web": "10.77.0.5"}.get, ALLOWED.__eq__))
    cases = [
        ("web.vm (answered)", "web.vm", "127.0.0.1"),
        (f"{NAME} (refused)", NAME, "127.0.0.1"),
        (f"{NAME} (forwarded)", NAME, ALLOWED),
    ]
    figures = []
    for label, name, source in cases:
        wire = dns.message.make_query(name, "A").to_wire()
        times = round_trips(responder.port, wire, source, runs)
        # Ten batch medians as the samples: the page plots runs, not 2000 points.
        batch = max(1, len(times) // 10)
        samples = [
            statistics.median(times[i : i + batch]) * 1e6 for i in range(0, len(times), batch)
        ]
        figures.append(Case(label, samples, "us"))
    run(responder.stop())
    run(upstream.stop())
    emit(
        Figures(
            bench="dns_latency",
            title="DNS responder round trip on loopback (medians of batches)",
            cases=figures,
            notes=[f"{runs} queries per case, in 10 batches"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
