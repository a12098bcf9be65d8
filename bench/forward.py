"""A forwarded connection's throughput against a direct one to the VM (one run).

Creates a VM with ``-p HOST_PORT:9000`` and ``-p HOST_PORT2:9001``, starts
guest servers (core perl: the default image has no python) that send SIZE
MiB to each connection, one on every address (9000) and one on the guest's
loopback only (9001), then reads once straight from the VM's address, once
through bangerd's relay on the direct path, and once through the relay's
agent path (the guest agent's connect op, which a loopback-only server
needs), and prints the three rates and their ratios.
Under TCG the guest's network device is the bottleneck, so the ratio says
what the relay costs on top of it. Run it with the environment of the
banger whose daemon should be used (BANGER_HOME and friends).

    .venv/bin/python bench/forward.py [--size 64]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64, help="MiB per connection")
    parser.add_argument("--image", default=None)
    args = parser.parse_args()
    name, port, agent_port = "bench-forward", free_port(), free_port()
    image = ["--image", args.image] if args.image else []
    banger("vm", "create", "--name", name, "--memory", "512", "-p", f"{port}:{GUEST_PORT}",
           "-p", f"{agent_port}:{LOOPBACK_PORT}", *image)  # fmt: skip
    try:
        ip = json.loads(banger("vm", "show", name, "--json"))["ip"]
        banger("vm", "ssh", name, "--", "sh", "-c", server(args.size, GUEST_PORT, "0.0.0.0"))  # noqa: S104
        banger("vm", "ssh", name, "--", "sh", "-c", server(args.size, LOOPBACK_PORT, "127.0.0.1"))
        rates = {}
        paths = (
            ("direct", ip, GUEST_PORT),
            ("forwarded", "127.0.0.1", port),
            ("agent", "127.0.0.1", agent_port),
        )
        for label, host, at in paths:
            total, took = read_all(host, at)
            if total != args.size << 20:
                raise SystemExit(f"{label}: got {total} bytes, expected {args.size << 20}")
            rates[label] = total / took / (1 << 20)
            print(f"{label:<10} {args.size} MiB in {took:6.2f} s = {rates[label]:7.1f} MiB/s")
        print(f"forwarded/direct = {rates['forwarded'] / rates['direct']:.2f}")
        print(f"agent/direct     = {rates['agent'] / rates['direct']:.2f}")
        print(f"agent/forwarded  = {rates['agent'] / rates['forwarded']:.2f}")
    finally:
        banger("vm", "delete", name)


if __name__ == "__main__":
    main()
