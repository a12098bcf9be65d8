"""`vm workspace prepare` and `export` against `rsync -a` of the same tree over the same SSH.

Makes a repository of 10,000 files and 100 MB (text, in 100 directories,
committed and packed as a checkout usually is), boots one VM, and in turn:
prepares it (the timed case), rsyncs the same checkout (its files and its
.git) to a fresh directory with the same ssh command line banger uses, and
rsyncs the working tree alone; then edits 500 files in the guest and times
the export of the patch. Prints each median and prepare / rsync.

    flock /tmp/banger-vm.lock .venv/bin/python bench/workspace.py [--runs 3]

It uses banger's environment (BANGER_HOME, BANGER_BRIDGE, ... as the e2e
tests set them) and an image that exists (debian-bookworm by default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent
VM = "ws-bench"
WORDS = [
    "def", "return", "self", "value", "import", "from", "class", "for", "in", "if",
    "else", "None", "True", "False", "print", "data", "result", "index", "name", "path",
    "config", "error", "items", "list", "dict", "with", "open", "write", "read", "yield",
]  # fmt: skip


def banger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "banger"), *args], capture_output=True, text=True, check=check, timeout=1800
    )


def make_repo(root: Path, files: int, total_bytes: int) -> None:
    rng = random.Random(8)  # noqa: S311 - reproducible content, not secrets
    per_file = total_bytes // files
    for n in range(files):
        d = root / f"pkg{n % 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        lines, size = [], 0
        while size < per_file:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n"
            lines.append(line)
            size += len(line)
        (d / f"mod{n:05d}.py").write_text("".join(lines))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    steps = (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"], ["gc", "-q"])
    for argv in steps:
        # No automatic gc in the background: the explicit one packs it all.
        subprocess.run(["git", "-c", "gc.auto=0", *argv], cwd=root, check=True, env=env)


def timed(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=1800)
    took = time.monotonic() - start
    print(f"  {took:6.2f} s  {' '.join(argv[:5])}", flush=True)
    return took


def ssh_command(target: dict[str, str]) -> list[str]:
    from banger.api.shapes import SshTarget
    from banger.api.ssh import ssh_argv

    argv = ssh_argv(SshTarget.from_json(target))
    return argv[: argv.index("--")]  # the options; rsync adds the destination


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--image", default="debian-bookworm")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--skip-tree",
        action="store_true",
        help="no rsync of the working tree alone (under software emulation a run of all"
        " three takes minutes: this keeps it within one hold of the shared VM lock)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.files, args.mb << 20)
        banger("vm", "delete", VM, check=False)
        banger("vm", "create", "--name", VM, "--image", args.image, "-q")
        try:
            run(repo, args.runs, args.json, not args.skip_tree)
        finally:
            banger("vm", "delete", VM, "-q", check=False)


def run(repo: Path, runs: int, json_path: Path | None, tree: bool) -> None:
    target = json.loads(banger("vm", "show", VM, "--json").stdout)
    ssh_target = json.loads(
        subprocess.run(
            ["curl", "-s", "--unix-socket", socket_path(), f"http://x/vms/{VM}/ssh"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    ssh = " ".join(ssh_command(ssh_target))
    dest = f"root@{target['ip']}"
    wipe = [
        str(BIN / "banger"),
        "vm",
        "exec",
        VM,
        "--",
        "rm",
        "-rf",
        "/root/r",
        "/root/t",
        "/root/w",
    ]
    cases: dict[str, list[float]] = {"prepare": [], "rsync checkout": []}
    if tree:
        cases["rsync tree"] = []
    for _ in range(runs):
        subprocess.run(wipe, check=True, capture_output=True)
        prepare = [str(BIN / "banger"), "vm", "workspace", "prepare", VM, str(repo)]
        cases["prepare"].append(timed([*prepare, "--guest-path", "/root/w"]))
        cases["rsync checkout"].append(
            timed(["rsync", "-a", "-e", ssh, f"{repo}/", f"{dest}:/root/r/"])
        )
        if tree:
            cases["rsync tree"].append(
                timed(["rsync", "-a", "--exclude=.git", "-e", ssh, f"{repo}/", f"{dest}:/root/t/"])
            )
    patch = repo.parent / "export.patch"
    edit = "for f in $(ls pkg00*/*.py | head -500); do echo '# edited' >> $f; done"
    subprocess.run([str(BIN / "banger"), "vm", "exec", VM, "--", "sh", "-c", edit], check=True)
    cases["export (500 files)"] = [
        timed([str(BIN / "banger"), "vm", "workspace", "export", VM, "-o", str(patch)])
        for _ in range(runs)
    ]
    size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)
    medians = {name: statistics.median(times) for name, times in cases.items()}
    ratios = [
        Ratio(
            "prepare / rsync -a of the checkout",
            medians["prepare"] / medians["rsync checkout"],
            1.0,
        )
    ]
    if tree:
        ratios.append(
            Ratio(
                "prepare / rsync -a of the tree alone", medians["prepare"] / medians["rsync tree"]
            )
        )
    emit(
        Figures(
            bench="workspace",
            title="Workspace prepare and export against rsync over the same SSH",
            cases=[Case(name, times, "s") for name, times in cases.items()],
            ratios=ratios,
            notes=[f"repository: {len(list(repo.glob('pkg*/*')))} files, {size / 2**20:.0f} MB"],
        ),
        json_path,
    )


def socket_path() -> str:
    from banger.config import load_settings

    return str(load_settings().socket)


if __name__ == "__main__":
    main()
