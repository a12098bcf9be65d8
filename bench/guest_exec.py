"""Commands and copies through banger's guest channel against SSH and scp on the same VM.

Boots one VM of the default image (or uses --vm NAME) and measures, each a
median of --runs:

- `banger vm exec NAME -- true` against `banger vm ssh NAME -- true` (target: 0.25x or less);
- an exec round trip through the API without the CLI: the websocket `vm exec`
  uses, opened, run and closed from this process (target: 30 ms or less), and the
  same as an operation (POST /vms/NAME/exec, its events followed to the end);
- 100 MB through `banger vm cp` into the guest and out of it, against `scp` with
  the ssh options `banger vm ssh` uses (target: 0.8x scp's throughput or more).

    flock /tmp/banger-vm.lock .venv/bin/python bench/guest_exec.py [--runs 5]

It uses banger's environment (BANGER_HOME, BANGER_BRIDGE, ... as the e2e tests
set them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
VM = "exec-bench"
SIZE = 100 << 20


def banger(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, check=check, timeout=1800
    )


def median_of(runs: int, what: str, step: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    took = statistics.median(times)
    print(f"  {what:<44} median {took * 1000:8.1f} ms  (min {min(times) * 1000:.1f})", flush=True)
    return took


def ssh_options(vm: str) -> tuple[list[str], str]:
    from banger.api.client import connect
    from banger.api.shapes import SshTarget
    from banger.api.ssh import ssh_argv
    from banger.config import load_settings

    target = connect(load_settings()).get(f"/vms/{vm}/ssh", SshTarget.from_json)
    argv = ssh_argv(target)
    return argv[1 : argv.index("--")], f"{target.user}@{target.host}"


def exec_numbers(vm: str, runs: int) -> None:
    from banger.api.client import connect
    from banger.api.shapes import ExecRequest
    from banger.config import load_settings
    from banger.workspace.agent_channel import AgentChannel

    settings = load_settings()
    print(f"exec in {vm} ({runs} runs each)")
    cli = median_of(
        runs, "banger vm exec NAME -- true", lambda: banger("vm", "exec", vm, "--", "true")
    )
    ssh = median_of(
        runs, "banger vm ssh NAME -- true", lambda: banger("vm", "ssh", vm, "--", "true")
    )
    channel = AgentChannel(str(settings.socket), vm)
    api = median_of(
        max(runs, 20), "API websocket exec of true (no CLI)", lambda: channel.run(["true"])
    )
    read = median_of(
        max(runs, 20), "API websocket read of /etc/hostname", lambda: read_small(channel)
    )
    client = connect(settings)

    def operation() -> None:
        op = client.start("POST", f"/vms/{vm}/exec", ExecRequest(argv=["true"]))
        client.follow(op, lambda _: None)

    op = median_of(max(runs, 20), "API exec operation of true, followed", operation)
    print(f"  vm exec / vm ssh = {cli / ssh:.2f}x (target <= 0.25x)")
    print(
        f"  API round trip {api * 1000:.1f} ms, as an operation {op * 1000:.1f} ms (target <= 30)"
    )
    print(f"  a read with no process in the guest: {read * 1000:.1f} ms (the rest is fork+exec)")


def read_small(channel: object) -> None:
    from banger.workspace.agent_channel import AgentChannel

    assert isinstance(channel, AgentChannel)
    sink = channel._transfer(
        {"op": "read", "path": "/etc/hostname"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    sink.stdout.read()
    sink.wait()


def copy_numbers(vm: str, runs: int) -> None:
    opts, dest = ssh_options(vm)
    mib = SIZE / (1 << 20)
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = tmp / "big"
        with big.open("wb") as out:
            for _ in range(SIZE // (1 << 20)):
                out.write(os.urandom(1 << 20))
        print(f"copies of {mib:.0f} MiB ({runs} runs each)")
        cp_in = median_of(
            runs,
            "banger vm cp FILE NAME:/root/",
            lambda: banger("vm", "cp", str(big), f"{vm}:/root/"),
        )
        scp_in = median_of(
            runs,
            "scp FILE root@VM:/root/big-scp",
            lambda: subprocess.run(
                ["scp", "-q", *opts, str(big), f"{dest}:/root/big-scp"], check=True
            ),
        )
        cp_out = median_of(
            runs,
            "banger vm cp NAME:/root/big DIR/",
            lambda: banger("vm", "cp", f"{vm}:/root/big", str(tmp / "out")),
        )
        scp_out = median_of(
            runs,
            "scp root@VM:/root/big-scp DIR/",
            lambda: subprocess.run(
                ["scp", "-q", *opts, f"{dest}:/root/big-scp", str(tmp / "out-scp")], check=True
            ),
        )
        assert (tmp / "out").read_bytes() == big.read_bytes()
    for way, cp, scp in (("into the guest", cp_in, scp_in), ("out of it", cp_out, scp_out)):
        print(
            f"  {way:<15} vm cp {mib / cp:6.1f} MiB/s, scp {mib / scp:6.1f} MiB/s:"
            f" {scp / cp:.2f}x scp's throughput (target >= 0.8x)"
        )
    banger("vm", "exec", vm, "--", "rm", "-f", "/root/big", "/root/big-scp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vm", help="Use this running VM instead of creating one.")
    parser.add_argument("--skip-copy", action="store_true", help="Only the exec numbers.")
    parser.add_argument("--skip-exec", action="store_true", help="Only the copy numbers.")
    args = parser.parse_args()
    vm = args.vm or VM
    if args.vm is None:
        banger("vm", "delete", VM, check=False)
        start = time.monotonic()
        banger("vm", "create", "--name", VM)
        print(f"created {VM} in {time.monotonic() - start:.1f} s")
    try:
        if not args.skip_exec:
            exec_numbers(vm, args.runs)
        if not args.skip_copy:
            copy_numbers(vm, args.runs)
    finally:
        if args.vm is None:
            banger("vm", "delete", VM, check=False)


if __name__ == "__main__":
    main()
