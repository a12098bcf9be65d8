"""Commands and copies through banger's guest channel against SSH and scp on the same VM.

Boots one VM of the default image (or uses --vm NAME) and measures, each a
median of --runs:

- `banger vm exec NAME -- true` against `banger vm ssh NAME -- true` (target: 0.25x or less);
- an exec round trip through the API without the CLI: the websocket `vm exec`
  uses, opened, run and closed from this process (target: 30 ms or less), and the
  same as an operation (POST /vms/NAME/exec, its events followed to the end);
- 100 MB through `banger vm cp` into the guest and out of it, against `scp` with
  the ssh options `banger vm ssh` uses (target: 0.8x scp's throughput or more).

    flock /tmp/banger-vm.lock .venv/bin/python bench/guest_exec.py [--runs 5] [--json FILE] \
        [--parts exec in out]

Under software emulation all of it takes longer than one hold of the shared VM
lock: ``--parts`` measures some and keeps the others' figures from FILE.

It uses banger's environment (BANGER_HOME, BANGER_BRIDGE, ... as the e2e tests
set them).
"""

from __future__ import annotations

import argparse
import json
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
    cli, ssh = alternating(
        runs,
        ("banger vm exec NAME -- true", lambda: banger("vm", "exec", vm, "--", "true")),
        ("banger vm ssh NAME -- true", lambda: banger("vm", "ssh", vm, "--", "true")),
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


def alternating(
    runs: int, first: tuple[str, Callable[[], object]], second: tuple[str, Callable[[], object]]
) -> tuple[list[float], list[float]]:
    """Both steps in turn, after one untimed call each: a guest still busy starting its
    services right after boot slows both alike, not whichever came first."""
    first[1]()
    second[1]()
    one: list[float] = []
    two: list[float] = []
    for _ in range(runs):
        one += samples_of(1, first[0], first[1])
        two += samples_of(1, second[0], second[1])
    for said, times in ((first[0], one), (second[0], two)):
        print(f"  {said:<44} median {statistics.median(times) * 1000:8.1f} ms", flush=True)
    return one, two


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


WAYS = {"in": "into the guest", "out": "out of the guest"}


def copy_numbers(vm: str, runs: int, ways: list[str]) -> tuple[list[Case], list[Ratio]]:
    opts, dest = ssh_options(vm)
    mib = SIZE / (1 << 20)
    cases: list[Case] = []
    ratios: list[Ratio] = []
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = tmp / "big"
        with big.open("wb") as out:
            for _ in range(SIZE // (1 << 20)):
                out.write(os.urandom(1 << 20))
        print(f"copies of {mib:.0f} MiB ({runs} runs each)")
        if "in" not in ways:  # what the copies out read, put there untimed
            banger("vm", "cp", str(big), f"{vm}:/root/")
            banger("vm", "exec", vm, "--", "cp", "/root/big", "/root/big-scp")
        for way in ways:
            cp, scp = copy_way(vm, runs, way, big, opts, dest)
            rate_cp, rate_scp = [mib / t for t in cp], [mib / t for t in scp]
            cases += [
                Case(f"vm cp {WAYS[way]}", rate_cp, "MiB/s"),
                Case(f"scp {WAYS[way]}", rate_scp, "MiB/s"),
            ]
            ratio = statistics.median(rate_cp) / statistics.median(rate_scp)
            ratios.append(Ratio(f"vm cp / scp throughput, {WAYS[way]}", ratio, 0.8, True))
        if "out" in ways:
            assert (tmp / "out").read_bytes() == big.read_bytes()
    banger("vm", "exec", vm, "--", "rm", "-f", "/root/big", "/root/big-scp")
    return cases, ratios


def copy_way(
    vm: str, runs: int, way: str, big: Path, opts: list[str], dest: str
) -> tuple[list[float], list[float]]:
    """Seconds of each `vm cp` and each `scp` of ``big`` one way."""
    here = big.parent
    if way == "in":
        cp_said, cp = "banger vm cp FILE NAME:/root/", ["vm", "cp", str(big), f"{vm}:/root/"]
        scp_said, scp = "scp FILE root@VM:/root/big-scp", [str(big), f"{dest}:/root/big-scp"]
    else:
        cp_said, cp = (
            "banger vm cp NAME:/root/big DIR/",
            ["vm", "cp", f"{vm}:/root/big", str(here / "out")],
        )
        scp_said, scp = (
            "scp root@VM:/root/big-scp DIR/",
            [f"{dest}:/root/big-scp", str(here / "out-scp")],
        )
    cp_times = samples_of(runs, cp_said, lambda: banger(*cp))
    scp_times = samples_of(
        runs, scp_said, lambda: subprocess.run(["scp", "-q", *opts, *scp], check=True)
    )
    return cp_times, scp_times


def part_of(name: str) -> str:
    """Which part of the benchmark a case or ratio comes from: exec, in or out."""
    for way, said in WAYS.items():
        if name.endswith(said):
            return way
    return "exec"


def carried(json_path: Path | None, part: str) -> tuple[list[Case], list[Ratio], list[str]]:
    """The ``part`` (exec, in or out) of an earlier run's figures in json_path, if any.

    All of it takes longer than one hold of the shared VM lock under
    software emulation, so each part may run on its own; every ratio compares
    two things measured in the same part, so each ratio is still from one run.
    """
    if json_path is None or not json_path.exists():
        return [], [], []
    earlier = json.loads(json_path.read_text())
    cases = [
        Case(c["name"], c["samples"], c["unit"])
        for c in earlier["cases"]
        if part_of(c["name"]) == part
    ]
    ratios = [
        Ratio(r["name"], r["value"], r["target"], r["at_least"])
        for r in earlier["ratios"]
        if part_of(r["name"]) == part
    ]
    if not cases:
        return [], [], []
    said = f"the {part} figures from an earlier run ("
    already = [n for n in earlier["notes"] if n.startswith(said)]
    if already:  # carried more than once: still that run's time and load
        return cases, ratios, already[:1]
    loads = [n for n in earlier["notes"] if n.startswith("load average")]
    said += earlier["when"]
    return cases, ratios, [f"{said}; {loads[-1]})" if loads else f"{said})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vm", help="Use this running VM instead of creating one.")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["exec", "in", "out"],
        default=["exec", "in", "out"],
        help="Measure only these (execs, copies in, copies out); with --json, the other"
        " parts' figures already in the file are kept.",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    vm = args.vm or VM
    cases: list[Case] = []
    ratios: list[Ratio] = []
    notes: list[str] = []
    for part in sorted({"exec", "in", "out"} - set(args.parts)):
        kept_cases, kept_ratios, kept_notes = carried(args.json, part)
        cases += kept_cases
        ratios += kept_ratios
        notes += kept_notes
    if args.vm is None:
        banger("vm", "delete", VM, check=False)
        start = time.monotonic()
        banger("vm", "create", "--name", VM)
        print(f"created {VM} in {time.monotonic() - start:.1f} s")
    try:
        if "exec" in args.parts:
            more_cases, more_ratios = exec_numbers(vm, args.runs)
            cases += more_cases
            ratios += more_ratios
        ways = [way for way in WAYS if way in args.parts]
        if ways:
            more_cases, more_ratios = copy_numbers(vm, args.runs, ways)
            cases += more_cases
            ratios += more_ratios
    finally:
        if args.vm is None:
            banger("vm", "delete", VM, check=False)
    order = ["exec", "in", "out"]  # on the page in this order whichever parts ran now
    cases.sort(key=lambda case: order.index(part_of(case.name)))
    ratios.sort(key=lambda ratio: order.index(part_of(ratio.name)))
    emit(
        Figures(
            bench="guest_exec",
            title="Commands and copies through the guest channel against SSH and scp, one VM",
            cases=cases,
            ratios=ratios,
            notes=[
                f"copies of {SIZE >> 20} MiB of random bytes; scp with banger's ssh options",
                "the websocket read starts no guest process: the rest of an exec is fork+exec",
                *notes,
            ],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
