"""A forwarded connection's throughput against a direct one to the VM (one run).

Creates a VM with ``-p HOST_PORT:9000``, starts a guest server (core perl:
the default image has no python) that sends SIZE MiB to each connection,
then reads it once straight from the VM's address and once through
bangerd's relay on 127.0.0.1, and prints both rates and their ratio.
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


def banger(*args: str) -> str:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, text=True, check=True
    ).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server(size_mib: int) -> str:
    """Each connection gets size_mib MiB of zeros; returns once it listens."""
    script = (
        f"use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => {GUEST_PORT},"
        " Listen => 5, ReuseAddr => 1) or die; my $b = chr(0) x 1048576;"
        f" while (my $c = $s->accept) {{ print $c $b for 1..{size_mib}; close $c }}"
    )
    return (
        f": > /tmp/in; nohup perl -e '{script}' > /tmp/bench.log 2>&1 < /tmp/in &"
        f" while ! grep -q ':{GUEST_PORT:04X} 00000000:0000 0A' /proc/net/tcp; do sleep 0.05; done"
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
    name, port = "bench-forward", free_port()
    image = ["--image", args.image] if args.image else []
    banger("vm", "create", "--name", name, "--memory", "512", "-p", f"{port}:{GUEST_PORT}", *image)
    try:
        ip = json.loads(banger("vm", "show", name, "--json"))["ip"]
        banger("vm", "ssh", name, "--", "sh", "-c", server(args.size))
        rates = {}
        for label, host, at in (("direct", ip, GUEST_PORT), ("forwarded", "127.0.0.1", port)):
            total, took = read_all(host, at)
            if total != args.size << 20:
                raise SystemExit(f"{label}: got {total} bytes, expected {args.size << 20}")
            rates[label] = total / took / (1 << 20)
            print(f"{label:<10} {args.size} MiB in {took:6.2f} s = {rates[label]:7.1f} MiB/s")
        print(f"forwarded/direct = {rates['forwarded'] / rates['direct']:.2f}")
    finally:
        banger("vm", "delete", name)


if __name__ == "__main__":
    main()
