"""Commands and copies through banger's guest channel against SSH and scp on the same VM.

Boots one VM of the default image (or uses --vm NAME) and measures, each a
median of --runs:

- `banger vm exec NAME -- true` against `banger vm ssh NAME -- true` (target: 0.25x or less);
- an exec round trip through the API without the CLI: the websocket `vm exec`
  uses, opened, run and closed from this process (target: 30 ms or less), and the
  same as an operation (POST /vms/NAME/exec, its events followed to the end);
- 100 MB through `banger vm cp` into the guest and out of it, against `scp` with
  the ssh options `banger vm ssh` uses (target: 0.8x scp's throughput or more).

    flock /tmp/banger-vm.lock .venv/bin/python bench/guest_exec.py [--runs 5] [--json FILE]

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

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
VM = "exec-bench"
SIZE = 100 << 20


def banger(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, check=check, timeout=1800
    )


def samples_of(runs: int, what: str, step: Callable[[], object]) -> list[float]:
    """Seconds of each of ``runs`` calls of ``step``; the median printed as they end."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    took = statistics.median(times)
    print(f"  {what:<44} median {took * 1000:8.1f} ms  (min {min(times) * 1000:.1f})", flush=True)
    return times


def ssh_options(vm: str) -> tuple[list[str], str]:
    from banger.api.client import connect
    from banger.api.shapes import SshTarget
    from banger.api.ssh import ssh_argv
    from banger.config import load_settings

    target = connect(load_settings()).get(f"/vms/{vm}/ssh", SshTarget.from_json)
    argv = ssh_argv(target)
    return argv[1 : argv.index("--")], f"{target.user}@{target.host}"


def exec_numbers(vm: str, runs: int) -> tuple[list[Case], list[Ratio]]:
    from banger.api.client import connect
    from banger.api.shapes import ExecRequest
    from banger.config import load_settings
    from banger.workspace.agent_channel import AgentChannel

    settings = load_settings()
    print(f"exec in {vm} ({runs} runs each)")
    cli = samples_of(
        runs, "banger vm exec NAME -- true", lambda: banger("vm", "exec", vm, "--", "true")
    )
    ssh = samples_of(
        runs, "banger vm ssh NAME -- true", lambda: banger("vm", "ssh", vm, "--", "true")
    )
    channel = AgentChannel(str(settings.socket), vm)
    api = samples_of(
        max(runs, 20), "API websocket exec of true (no CLI)", lambda: channel.run(["true"])
    )
    read = samples_of(
        max(runs, 20), "API websocket read of /etc/hostname", lambda: read_small(channel)
    )
    client = connect(settings)

    def operation() -> None:
        op = client.start("POST", f"/vms/{vm}/exec", ExecRequest(argv=["true"]))
        client.follow(op, lambda _: None)

    op = samples_of(max(runs, 20), "API exec operation of true, followed", operation)
    cases = [
        Case("banger vm exec NAME -- true", as_ms(cli), "ms"),
        Case("banger vm ssh NAME -- true", as_ms(ssh), "ms"),
        Case("API websocket exec of true", as_ms(api), "ms"),
        Case("API websocket read of a small file", as_ms(read), "ms"),
        Case("API exec operation, followed", as_ms(op), "ms"),
    ]
    med = statistics.median
    ratios = [
        Ratio("vm exec / vm ssh", med(cli) / med(ssh), 0.25),
        Ratio("API websocket exec round trip, median ms", med(api) * 1000, 30),
        Ratio("API exec operation round trip, median ms", med(op) * 1000, 30),
    ]
    return cases, ratios


def as_ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def read_small(channel: object) -> None:
    from banger.workspace.agent_channel import AgentChannel

    assert isinstance(channel, AgentChannel)
    sink = channel._transfer(
        {"op": "read", "path": "/etc/hostname"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    sink.stdout.read()
    sink.wait()


def copy_numbers(vm: str, runs: int) -> tuple[list[Case], list[Ratio]]:
    opts, dest = ssh_options(vm)
    mib = SIZE / (1 << 20)
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = tmp / "big"
        with big.open("wb") as out:
            for _ in range(SIZE // (1 << 20)):
                out.write(os.urandom(1 << 20))
        print(f"copies of {mib:.0f} MiB ({runs} runs each)")
        cp_in = samples_of(
            runs,
            "banger vm cp FILE NAME:/root/",
            lambda: banger("vm", "cp", str(big), f"{vm}:/root/"),
        )
        scp_in = samples_of(
            runs,
            "scp FILE root@VM:/root/big-scp",
            lambda: subprocess.run(
                ["scp", "-q", *opts, str(big), f"{dest}:/root/big-scp"], check=True
            ),
        )
        cp_out = samples_of(
            runs,
            "banger vm cp NAME:/root/big DIR/",
            lambda: banger("vm", "cp", f"{vm}:/root/big", str(tmp / "out")),
        )
        scp_out = samples_of(
            runs,
            "scp root@VM:/root/big-scp DIR/",
            lambda: subprocess.run(
                ["scp", "-q", *opts, f"{dest}:/root/big-scp", str(tmp / "out-scp")], check=True
            ),
        )
        assert (tmp / "out").read_bytes() == big.read_bytes()
    banger("vm", "exec", vm, "--", "rm", "-f", "/root/big", "/root/big-scp")
    timed = {"cp in": cp_in, "scp in": scp_in, "cp out": cp_out, "scp out": scp_out}
    rate = {way: [mib / t for t in times] for way, times in timed.items()}
    cases = [
        Case("vm cp into the guest", rate["cp in"], "MiB/s"),
        Case("scp into the guest", rate["scp in"], "MiB/s"),
        Case("vm cp out of the guest", rate["cp out"], "MiB/s"),
        Case("scp out of the guest", rate["scp out"], "MiB/s"),
    ]
    med = statistics.median
    ratios = [
        Ratio(f"vm cp / scp throughput, {way}", med(rate[f"cp {key}"]) / med(rate[f"scp {key}"]),
              0.8, at_least=True)
        for way, key in (("into the guest", "in"), ("out of it", "out"))
    ]  # fmt: skip
    return cases, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vm", help="Use this running VM instead of creating one.")
    parser.add_argument("--skip-copy", action="store_true", help="Only the exec numbers.")
    parser.add_argument("--skip-exec", action="store_true", help="Only the copy numbers.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vm = args.vm or VM
    if args.vm is None:
        banger("vm", "delete", VM, check=False)
        start = time.monotonic()
        banger("vm", "create", "--name", VM)
        print(f"created {VM} in {time.monotonic() - start:.1f} s")
    cases: list[Case] = []
    ratios: list[Ratio] = []
    try:
        for skip, numbers in ((args.skip_exec, exec_numbers), (args.skip_copy, copy_numbers)):
            if not skip:
                more_cases, more_ratios = numbers(vm, args.runs)
                cases += more_cases
                ratios += more_ratios
    finally:
        if args.vm is None:
            banger("vm", "delete", VM, check=False)
    emit(
        Figures(
            bench="guest_exec",
            title="Commands and copies through the guest channel against SSH and scp, one VM",
            cases=cases,
            ratios=ratios,
            notes=[
                f"copies of {SIZE >> 20} MiB of random bytes; scp with banger's ssh options",
                "the websocket read starts no guest process: the rest of an exec is fork+exec",
            ],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
