"""docs/benchmarks.md and its plots, from the JSON the benchmarks wrote (bench/figures.py).

    .venv/bin/python bench/report.py [--out docs]

The benchmarks write their JSON into docs/bench/ (bench/run_all.py), beside
the plots made here. One section per benchmark: its cases' medians and runs, its ratios against
their targets, and a plot (PNG) of every sample; the machine they came from
heads the page. Only what the JSON says is written: a benchmark that did not
run is listed as such, never carried over from an older page.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    data = args.out / "bench"
    results = {p.stem: json.loads(p.read_text()) for p in sorted(data.glob("*.json"))}
    if not results:
        raise SystemExit(f"no results in {data}: run `make bench` first")
    names = [n for n in ORDER if n in results] + sorted(set(results) - set(ORDER))
    first = results[names[0]]["machine"]
    page = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run_all.py, then bench/report.py); every ratio is",
        "between medians measured in the same run. Absolute times drift between machines;",
        "the ratios are what to compare.",
        "",
        f"Machine: {first['cpus']} CPUs ({first['cpu'] or 'unknown model'}),"
        f" {first['memory_mib']} MiB, Linux {first['kernel']}, Python {first['python']};"
        " guests run under QEMU with software emulation (TCG) on this kind of host.",
        "",
    ]
    missing = [n for n in ORDER if n not in results]
    if missing:
        page += [
            f"Not in this run: {', '.join(missing)} (those print their figures but do not"
            " write this page's JSON yet, or boot VMs and were not run for it).",
            "",
        ]
    for name in names:
        png = f"{name}.png"
        plot(results[name], args.out / "bench" / png)
        page += section(results[name], png)
    (args.out / "benchmarks.md").write_text("\n".join(page))
    print(f"wrote {args.out / 'benchmarks.md'} and {len(names)} plot(s)")


if __name__ == "__main__":
    main()
