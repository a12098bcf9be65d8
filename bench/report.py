"""docs/benchmarks.md and its plots, from the JSON the benchmarks wrote (bench/figures.py).

    .venv/bin/python bench/report.py [--out docs]

The benchmarks write their JSON into docs/bench/ (bench/run_all.py), beside
the plots made here. One section per benchmark: its cases' medians and runs, its ratios against
their targets, and a plot (PNG) of every sample; the machine they came from
heads the page. Only what the JSON says is written: a benchmark that did not
run is listed as such, never carried over from an older page. A JSON file
that is not what bench/figures.py writes stops the page with its name and
what is wrong with it, rather than a page with a hole or a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here
import matplotlib.pyplot as plt

ORDER = [
    "vm_boot_overhead", "vm_create_size", "cli_client", "cli_startup", "oci_pull", "density",
    "disk_at_rest", "workspace", "guest_exec", "agent_link", "vm_run", "snapshot", "forward",
    "sdk_calls", "dns_latency",
]  # fmt: skip


class Malformed(ValueError):
    """A docs/bench/*.json that bench/figures.py did not write (or was edited)."""


# What emit() writes; each key's type, checked before anything is drawn.
TOP = {"bench": str, "title": str, "when": str, "machine": dict, "cases": list,
       "ratios": list, "notes": list}  # fmt: skip
CASE = {"name": str, "unit": str, "samples": list, "median": (int, float)}
RATIO = {"name": str, "value": (int, float), "target": (int, float, type(None)),
         "at_least": bool, "met": (bool, type(None))}  # fmt: skip
MACHINE = ("cpus", "cpu", "memory_mib", "kernel", "python")


def _check(where: str, item: object, shape: dict[str, Any]) -> None:
    if not isinstance(item, dict):
        raise Malformed(f"{where} is not an object")
    for key, kind in shape.items():
        if key not in item:
            raise Malformed(f"{where} has no {key!r}")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # True is an int to isinstance: a number field holding a bool is wrong all the same.
        if not isinstance(item[key], kinds) or (isinstance(item[key], bool) and bool not in kinds):
            raise Malformed(f"{where}: {key!r} is {type(item[key]).__name__}, not as emit writes")


def load(path: Path) -> dict[str, Any]:
    """One benchmark's figures, or Malformed saying which file and what is wrong."""
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Malformed(f"{path}: not readable as JSON ({err})") from err
    _check(str(path), result, TOP)
    missing = [key for key in MACHINE if key not in result["machine"]]
    if missing:
        raise Malformed(f"{path}: the machine has no {', '.join(missing)}")
    if not result["cases"]:
        raise Malformed(f"{path}: no cases")
    for n, case in enumerate(result["cases"]):
        _check(f"{path}: case {n}", case, CASE)
        samples = case["samples"]
        if not samples or not all(isinstance(s, int | float) for s in samples):
            raise Malformed(f"{path}: case {case['name']!r} has no samples, or one not a number")
    for n, ratio in enumerate(result["ratios"]):
        _check(f"{path}: ratio {n}", ratio, RATIO)
    if result["bench"] != path.stem:
        raise Malformed(f"{path}: written by {result['bench']!r}, not {path.stem!r}")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    cases = result["cases"]
    units = sorted({c["unit"] for c in cases})
    width = min(10.0, 2.5 + 1.4 * len(cases))
    fig, axes = plt.subplots(1, len(units), figsize=(width, 3.4), squeeze=False)
    for ax, unit in zip(axes[0], units, strict=True):
        mine = [c for c in cases if c["unit"] == unit]
        for i, case in enumerate(mine):
            ax.scatter([i] * len(case["samples"]), case["samples"], s=14, alpha=0.6, color="C0")
            ax.hlines(case["median"], i - 0.3, i + 0.3, color="C1", linewidth=2)
        ax.set_xticks(range(len(mine)), [c["name"] for c in mine], rotation=20, ha="right")
        ax.set_ylabel(unit)
        every = [s for c in mine for s in c["samples"]]
        if min(every) > 0 and max(every) / min(every) > 50:
            # Milliseconds beside seconds: on a linear axis the small ones are a flat line.
            ax.set_yscale("log")
            ax.set_ylabel(f"{unit} (log scale)")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(result["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(result: dict[str, Any], png: str) -> list[str]:
    lines = [f"## {result['title']}", "", f"`bench/{result['bench']}.py`, {result['when']}", ""]
    lines += ["| case | median | runs |", "|---|---:|---|"]
    for case in result["cases"]:
        runs = ", ".join(f"{s:.3g}" for s in case["samples"])
        lines.append(f"| {case['name']} | {case['median']:.3g} {case['unit']} | {runs} |")
    if result["ratios"]:
        lines += ["", "| ratio (same run) | value | target | met |", "|---|---:|---:|---|"]
        for r in result["ratios"]:
            sign = ">=" if r["at_least"] else "<="
            target = "" if r["target"] is None else f"{sign} {r['target']:g}"
            met = {True: "yes", False: "**no**", None: ""}[r["met"]]
            lines.append(f"| {r['name']} | {r['value']:.3g} | {target} | {met} |")
    lines += [""] + [f"- {n}" for n in result["notes"]]
    lines += ["", f"![{result['title']}](bench/{png})", ""]
    return lines


def render(out: Path) -> list[str]:
    """Write out/benchmarks.md and one plot per out/bench/*.json; the benchmarks' names."""
    data = out / "bench"
    results = {p.stem: load(p) for p in sorted(data.glob("*.json"))}
    if not results:
        raise Malformed(f"no results in {data}: run `make bench` first")
    names = [n for n in ORDER if n in results] + sorted(set(results) - set(ORDER))
    first = results[names[0]]["machine"]
    whens = [result["when"] for result in results.values()]
    page = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run_all.py, then bench/report.py); every ratio is",
        "between medians measured in the same run. Absolute times drift between machines;",
        "the ratios are what to compare. The machine is shared with other work while the",
        "benchmarks run: each section notes the load average at its start and end.",
        "",
        f"Machine: {first['cpus']} CPUs ({first['cpu'] or 'unknown model'}),"
        f" {first['memory_mib']} MiB, Linux {first['kernel']}, Python {first['python']};"
        " guests run under QEMU with software emulation (TCG) on this kind of host.",
        "",
        f"Measured between {min(whens)} and {max(whens)}; each section says when its own"
        " benchmark ran.",
        "",
    ]
    missing = [n for n in ORDER if n not in results]
    if missing:
        page += [f"Not in this run: {', '.join(missing)} (no figures in {data}).", ""]
    page += summary(results, names)
    for name in names:
        png = f"{name}.png"
        plot(results[name], data / png)
        page += section(results[name], png)
    (out / "benchmarks.md").write_text("\n".join(page))
    return names


def summary(results: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Every target on one table: what a reader checks first."""
    rows = [
        f"| {name} | {r['name']} | {r['value']:.3g} | {'>=' if r['at_least'] else '<='}"
        f" {r['target']:g} | {'yes' if r['met'] else '**no**'} |"
        for name in names
        for r in results[name]["ratios"]
        if r["target"] is not None
    ]
    if not rows:
        return []
    head = [
        "## Targets",
        "",
        "| benchmark | ratio | value | target | met |",
        "|---|---|---:|---:|---|",
    ]
    return [*head, *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    try:
        names = render(args.out)
    except Malformed as err:
        raise SystemExit(f"bench/report.py: {err}") from None
    print(f"wrote {args.out / 'benchmarks.md'} and {len(names)} plot(s)")


if __name__ == "__main__":
    main()
