"""What every benchmark prints and writes: medians, ratios to a baseline of the same run.

A benchmark measures its cases (each a list of samples), computes its ratios
from the medians of this one run, and calls ``emit``: the figures go to
stdout for a person and, with ``--json FILE``, to a file that
``bench/report.py`` turns into docs/benchmarks.md and its plots.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The machine is shared: what else ran beside a benchmark is said with its figures.
# Taken when the script imports this module, i.e. as the benchmark starts.
_LOAD_AT_START = os.getloadavg()


@dataclass
class Case:
    name: str
    samples: list[float]
    unit: str  # "s", "ms", "us", "MiB", "MB/s", "VMs"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Ratio:
    name: str  # "cold / baseline"
    value: float
    target: float | None = None  # the largest value that meets it
    at_least: bool = False  # the target is a floor, not a ceiling

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.at_least else self.value <= self.target


@dataclass
class Figures:
    bench: str  # the script's name, e.g. "oci_pull"
    title: str
    cases: list[Case]
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def machine() -> dict[str, object]:
    """Where the figures came from, said on the page beside them."""
    mem = 0
    try:
        with open("/proc/meminfo") as info:
            mem = int(info.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_mib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kvm": os.path.exists("/dev/kvm"),
    }


def load_note() -> str:
    """The load averages (1, 5, 15 min) as the benchmark started and as it ended."""

    def said(load: tuple[float, float, float]) -> str:
        return "/".join(f"{x:.2f}" for x in load)

    return (
        f"load average (1/5/15 min) at start {said(_LOAD_AT_START)},"
        f" at the end {said(os.getloadavg())} on {os.cpu_count()} CPUs"
    )


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.3g} {unit}"


def emit(figures: Figures, json_path: Path | None) -> None:
    figures.notes.append(load_note())
    print(figures.title)
    width = max(len(c.name) for c in figures.cases)
    for case in figures.cases:
        runs = ", ".join(f"{s:.3g}" for s in case.samples)
        print(f"  {case.name:<{width}}  median {_fmt(case.median, case.unit):>10}  ({runs})")
    for ratio in figures.ratios:
        if ratio.target is None:
            verdict = ""
        else:
            sign = ">=" if ratio.at_least else "<="
            verdict = f"  target {sign} {ratio.target:g}: {'met' if ratio.met else 'NOT MET'}"
        print(f"  {ratio.name}: {ratio.value:.3g}{verdict}")
    for note in figures.notes:
        print(f"  note: {note}")
    if json_path is not None:
        body = {
            "bench": figures.bench,
            "title": figures.title,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "cases": [{**asdict(c), "median": c.median} for c in figures.cases],
            "ratios": [{**asdict(r), "met": r.met} for r in figures.ratios],
            "notes": figures.notes,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(body, indent=2) + "\n")
