"""Median wall time of CLI invocations that must stay light (no daemon).

`banger --help`, `banger vm --help`, `banger version` and two tabs (a command
name, and a VM name with no daemon to ask), after what an empty interpreter
and `import click` cost on this machine. With ``--baseline SRC`` (another
checkout's src/, e.g. main's) its CLI is timed in the same rounds:

    .venv/bin/python bench/cli_startup.py [--runs 15] [--baseline /path/to/other/src]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import Case, Figures, Ratio, emit

BIN = Path(sys.executable).parent


def tab(line: str) -> dict[str, str]:
    """What bash sets for a tab at the end of ``line`` (click's completion protocol)."""
    words = line.split()
    return {
        "_BANGER_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) if line.endswith(" ") else len(words) - 1),
    }


# (label, argv, extra environment)
CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("banger --help", ["--help"], {}),
    ("banger vm --help", ["vm", "--help"], {}),
    ("banger version", ["version"], {}),
    ("tab: banger vm st", [], tab("banger vm st")),
    ("tab: banger vm show (no daemon)", [], tab("banger vm show ")),
]


def prepare(src: Path, fast_table: bool) -> None:
    """The state `make venv` leaves: bytecode (and the fast path's table) up to date.

    Where Python may not write bytecode (PYTHONDONTWRITEBYTECODE), stale files
    would be compiled on every run; a table older than the sources is not used.
    """
    if fast_table:
        subprocess.run(
            [sys.executable, "-m", "banger.cli.fastgen"], check=True, capture_output=True
        )
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)


def measure(runs: int, env: dict[str, str], baseline: Path | None) -> dict[str, list[float]]:
    # The floor first: an empty interpreter and `import click`, which every
    # command paid before the fast path. All cases in turn, round after round,
    # so a burst of load on a shared machine falls on all of them alike.
    plan = [
        ("python -c pass", [sys.executable, "-c", "pass"], env),
        ("import click", [sys.executable, "-c", "import click"], env),
    ]
    plan += [(label, [str(BIN / "banger"), *argv], env | extra) for label, argv, extra in CASES]
    if baseline is not None:
        old = env | {"PYTHONPATH": str(baseline)}
        plan += [
            (f"{label} (baseline)", [str(BIN / "banger"), *argv], old | extra)
            for label, argv, extra in CASES
        ]
    samples: dict[str, list[float]] = {label: [] for label, _, _ in plan}
    for _ in range(runs):
        for label, argv, case_env in plan:
            start = time.perf_counter()
            subprocess.run(argv, env=case_env, capture_output=True, check=True)
            samples[label].append((time.perf_counter() - start) * 1000)
    return samples


def loaded_by_help(env: dict[str, str]) -> list[str]:
    """The heavy modules `banger --help` imports, as the program itself runs."""
    heavy = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "banger"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return [m for m in ("click", "httpx", "rich", "pydantic", "fastapi") if f" {m}\n" in heavy]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also time the CLI of another checkout's src/ (e.g. main's), in the same rounds",
    )
    opts = parser.parse_args()
    import banger

    prepare(Path(banger.__file__).parent, fast_table=True)
    if opts.baseline is not None:
        prepare(opts.baseline, fast_table=False)
    with tempfile.TemporaryDirectory(prefix="banger-bench-") as tmp:
        # A runtime directory of its own, empty: the VM-name tab finds no daemon.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BANGER_", "XDG_"))} | {
            "BANGER_HOME": str(Path(tmp) / "home"),
            "BANGER_RUNTIME_DIR": str(Path(tmp) / "run"),
            "BANGER_CONFIG": str(Path(tmp) / "none.toml"),
        }
        samples = measure(opts.runs, env, opts.baseline)
        loaded = loaded_by_help(env)
    cases = [Case(label, times, "ms") for label, times in samples.items()]
    medians = {case.name: case.median for case in cases}
    ratios = [
        Ratio("banger --help median ms", medians["banger --help"], 60),
        Ratio(
            "banger --help - python -c pass, ms",
            medians["banger --help"] - medians["python -c pass"],
        ),
        Ratio("tab: banger vm st median ms", medians["tab: banger vm st"], 100),
    ]
    if opts.baseline is not None:
        ratios += [
            Ratio(f"{label}: this / baseline", medians[label] / medians[f"{label} (baseline)"])
            for label, _, _ in CASES
        ]
    emit(
        Figures(
            bench="cli_startup",
            title="CLI start-up without a daemon",
            cases=cases,
            ratios=ratios,
            notes=[
                f"heavy modules `banger --help` loads: {', '.join(loaded) or 'none'}",
                f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                "python -c pass and import click: what this machine charges, to scale by",
            ],
        ),
        opts.json,
    )


if __name__ == "__main__":
    main()
