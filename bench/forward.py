"""A forwarded connection's throughput against a direct one to the VM, in one run.

Creates a VM with ``-p HOST_PORT:9000`` and ``-p HOST_PORT2:9001``, starts
guest servers (core perl: the default image has no python) that send SIZE
MiB to each connection, one on every address (9000) and one on the guest's
loopback only (9001), then reads once straight from the VM's address, once
through bangerd's relay on the direct path, and once through the relay's
agent path (the guest agent's connect op, which a loopback-only server
needs), ``--runs`` times in turn, and prints the three rates' medians and
their ratios (with ``--json FILE``, written for docs/benchmarks.md).
Under TCG the guest's network device is the bottleneck, so the ratio says
what the relay costs on top of it. Run it with the environment of the
banger whose daemon should be used (BANGER_HOME and friends).

    flock /tmp/banger-vm.lock .venv/bin/python bench/forward.py [--size 64] [--runs 5] \
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
GUEST_PORT = 9000
LOOPBACK_PORT = 9001


def banger(*args: str) -> str:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, text=True, check=True
    ).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server(size_mib: int, port: int, bind: str) -> str:
    """Each connection gets size_mib MiB of zeros; returns once it listens."""
    script = (
        f'use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => "{bind}",'
        f" LocalPort => {port}, Listen => 5, ReuseAddr => 1) or die; my $b = chr(0) x 1048576;"
        f" while (my $c = $s->accept) {{ print $c $b for 1..{size_mib}; close $c }}"
    )
    return (
        f": > /tmp/in; nohup perl -e '{script}' > /tmp/bench-{port}.log 2>&1 < /tmp/in &"
        f" while ! grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp; do sleep 0.05; done"
    )


def read_all(host: str, port: int) -> tuple[int, float]:
    start = time.perf_counter()
    total = 0
    with socket.create_connection((host, port), timeout=60) as conn:
        while chunk := conn.recv(1 << 20):
            total += len(chunk)
    return total, time.perf_counter() - start


def measure(ip: str, port: int, agent_port: int, size: int, runs: int) -> dict[str, list[float]]:
    """MiB/s of each path, the paths taken in turn so drift hits them alike."""
    paths = (
        ("direct", ip, GUEST_PORT),
        ("forwarded", "127.0.0.1", port),
        ("agent", "127.0.0.1", agent_port),
    )
    rates: dict[str, list[float]] = {label: [] for label, _, _ in paths}
    for _ in range(runs):
        for label, host, at in paths:
            total, took = read_all(host, at)
            if total != size << 20:
                raise SystemExit(f"{label}: got {total} bytes, expected {size << 20}")
            rates[label].append(total / took / (1 << 20))
            print(f"{label:<10} {size} MiB in {took:6.2f} s = {rates[label][-1]:7.1f} MiB/s")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="MiB per connection")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    name, port, agent_port = "bench-forward", free_port(), free_port()
    image = ["--image", args.image] if args.image else []
    banger("vm", "create", "--name", name, "--memory", "512", "-p", f"{port}:{GUEST_PORT}",
           "-p", f"{agent_port}:{LOOPBACK_PORT}", *image)  # fmt: skip
    try:
        ip = json.loads(banger("vm", "show", name, "--json"))["ip"]
        banger("vm", "ssh", name, "--", "sh", "-c", server(args.size, GUEST_PORT, "0.0.0.0"))  # noqa: S104
        banger("vm", "ssh", name, "--", "sh", "-c", server(args.size, LOOPBACK_PORT, "127.0.0.1"))
        rates = measure(ip, port, agent_port, args.size, args.runs)
    finally:
        banger("vm", "delete", name)
    med = {label: statistics.median(r) for label, r in rates.items()}
    emit(
        Figures(
            bench="forward",
            title=f"A published port's throughput against a direct connection ({args.size} MiB)",
            cases=[
                Case("direct to the VM's address", rates["direct"], "MiB/s"),
                Case("forwarded (bangerd relay, direct path)", rates["forwarded"], "MiB/s"),
                Case("forwarded (agent path, loopback server)", rates["agent"], "MiB/s"),
            ],
            ratios=[
                Ratio("forwarded / direct", med["forwarded"] / med["direct"]),
                Ratio("agent path / direct", med["agent"] / med["direct"]),
                Ratio("agent path / forwarded", med["agent"] / med["forwarded"]),
            ],
            notes=["under TCG the guest's network device is the bottleneck of every path"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
