"""Whole-process medians of the commands people type most, against a real bangerd.

A throwaway BANGER_HOME gets a fake kernel, a fake image and 100 stopped VMs
written through banger's own Store (nothing boots), a real bangerd serves it,
and each command runs N times. Prints the median, the target and whether it
holds, after what this machine charges for an empty interpreter and for
importing click (to scale by: the targets were set where click took 25 ms).
Run it on an otherwise idle machine: a busy one inflates every number.

    .venv/bin/python bench/cli_client.py [--runs 15] [--vms 100]

To compare with another checkout in the same run (its CLI against this
daemon, each case of both taken in turn):
.venv/bin/python bench/cli_client.py --baseline /path/to/other/src
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
# (label, argv, extra environment, target median in ms): the architecture and
# benchmark issues' targets. Completion is what bash runs on a tab after
# `banger vm show bench-1`: click's own protocol, VM names from the daemon.
COMPLETE = {
    "_BANGER_COMPLETE": "bash_complete",
    "COMP_WORDS": "banger vm show bench-1",
    "COMP_CWORD": "3",
}
# Settings only bangerd uses; the CLI finds it by its home and runtime directory.
DAEMON_ONLY = {
    "BANGER_BRIDGE": "bgbench0",
    "BANGER_SUBNET": "10.99.0.0/24",
    "BANGER_DNS_PORT": "10099",
}
# The same settings in a config file (written as {tmp}/daemon.toml), as most set them.
DAEMON_TOML = 'bridge = "bgbench0"\nsubnet = "10.99.0.0/24"\ndns_port = 10099\n'
CASES: list[tuple[str, list[str], dict[str, str], float]] = [
    ("banger --help", ["--help"], {}, 60),
    ("banger vm list", ["vm", "list"], {}, 150),
    ("banger vm show", ["vm", "show", "bench-0"], {}, 120),
    ("tab completion", [], COMPLETE, 100),
    # The same tab where the daemon's own settings (bridge, subnet, DNS port) are
    # in the environment too: the fast path then resolves settings in full.
    ("tab completion, daemon settings in env", [], COMPLETE | DAEMON_ONLY, 100),
    (
        "tab completion, daemon settings in a config file",
        [],
        COMPLETE | {"BANGER_CONFIG": "{tmp}/daemon.toml"},
        100,
    ),
]


def seed_store(home: Path, count: int) -> None:
    """A kernel, an image and ``count`` stopped VMs, written as the daemon would."""
    from banger.api.models import Image, Kernel, Vm, VmState
    from banger.config import load_settings
    from banger.net.leases import lease
    from banger.store import Database, Store

    settings = load_settings(home=home)
    store = Store(Database(settings.db_path))
    now = "2026-01-01T00:00:00+00:00"
    store.add_kernel(
        Kernel(
            name="bench-kernel",
            version="6.1",
            dir=str(home),
            vmlinuz="/nonexistent/vmlinuz",
            initrd="/nonexistent/initrd",
            source="bench",
            created_at=now,
        )
    )
    store.add_image(
        Image(
            name="bench-image",
            kernel="bench-kernel",
            rootfs="/nonexistent/rootfs.ext4",
            size_bytes=1 << 30,
            source="bench",
            created_at=now,
        )
    )
    for i in range(count):
        vm_id = uuid.uuid4().hex[:12]
        draft = Vm(
            id=vm_id,
            name=f"bench-{i}",
            image="bench-image",
            state=VmState.STOPPED,
            vcpus=1,
            memory_mib=256,
            overlay_bytes=4 << 30,
            work_disk_bytes=8 << 30,
            ip="",
            tap=f"bgt{vm_id[:8]}",
            mac="02:00:00:00:00:01",
            vmm="qemu",
            dir=str(settings.vms_dir / vm_id),
            created_at=now,
        )
        lease(draft, store, settings.network)
    store.db.close()


@contextlib.contextmanager
def daemon(env: dict[str, str], runtime: Path) -> Iterator[None]:
    log = open(runtime / "bangerd.log", "wb")  # noqa: SIM115
    child = subprocess.Popen([str(BIN / "bangerd")], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not (runtime / "bangerd.sock").exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bangerd did not start; see {runtime / 'bangerd.log'}")
            time.sleep(0.05)
        # A root daemon starts banger-helper before it serves; let that finish
        # before timing.
        while os.geteuid() == 0 and not (runtime / "helper.sock").exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        yield
    finally:
        # The daemon stops the banger-helper it started (as root) on its way out.
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
        log.close()


def sample_ms(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=True)
    return (time.perf_counter() - start) * 1000


def measure(env: dict[str, str], runs: int, baseline: Path | None, tmp: str) -> list[Case]:
    """Every case once per round, round after round.

    On a shared machine the load comes and goes; taking the cases in turn puts
    each burst on all of them alike, so the medians of one run stay comparable
    (to each other, and to what an empty interpreter and click cost, which
    are measured the same way to scale by).
    """
    plan: list[tuple[str, list[str], dict[str, str]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"], env),
        ("import click", [sys.executable, "-c", "import click"], env),
    ]
    cases = [
        (label, argv, {k: v.format(tmp=tmp) for k, v in extra.items()})
        for label, argv, extra, _ in CASES
    ]
    plan += [(label, [str(BIN / "banger"), *argv], env | extra) for label, argv, extra in cases]
    if baseline is not None:
        old = env | {"PYTHONPATH": str(baseline)}
        plan += [
            (f"{label} (baseline)", [str(BIN / "banger"), *argv], old | extra)
            for label, argv, extra in cases
        ]
    samples: dict[str, list[float]] = {label: [] for label, _, _ in plan}
    for _ in range(runs):
        for label, argv, case_env in plan:
            samples[label].append(sample_ms(argv, case_env))
    return [Case(label, walls, "ms") for label, walls in samples.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also time the CLI of another checkout's src/ (e.g. main's), in the same rounds",
    )
    args = parser.parse_args()
    # The state `make venv` leaves (scripts/install-venv compiles src/banger),
    # brought up to date with sources edited since: where Python may not write
    # bytecode (PYTHONDONTWRITEBYTECODE), stale files would be compiled on every run.
    import banger

    # And the table the fast path answers --help and a tab from (banger.cli.fastgen).
    subprocess.run([sys.executable, "-m", "banger.cli.fastgen"], check=True, capture_output=True)
    for src in (Path(banger.__file__).parent, *([args.baseline] if args.baseline else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp:
        home, runtime = Path(tmp) / "home", Path(tmp) / "run"
        runtime.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BANGER_", "XDG_"))} | {
            "BANGER_HOME": str(home),
            "BANGER_RUNTIME_DIR": str(runtime),
            "BANGER_CONFIG": str(Path(tmp) / "none.toml"),
        }
        (Path(tmp) / "daemon.toml").write_text(DAEMON_TOML)
        os.environ.update(env | DAEMON_ONLY)
        seed_store(home, args.vms)
        with daemon(env | DAEMON_ONLY, runtime):
            cases = measure(env, args.runs, args.baseline, tmp)
    medians = {case.name: case.median for case in cases}
    ratios = [Ratio(f"{label} median ms", medians[label], target) for label, _, _, target in CASES]
    emit(
        Figures(
            bench="cli_client",
            title=f"CLI latency against a real bangerd with {args.vms} VMs in the store",
            cases=cases,
            ratios=ratios,
            notes=[
                "python -c pass and import click: what this machine charges, to scale by",
                f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            ],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
