"""bench/report.py renders what the benchmarks wrote, and refuses what they did not."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
PUBLISHED = BENCH.parent / "docs" / "bench"


def _module(name: str) -> ModuleType:
    # bench/ is a directory of scripts, not a package: load them as the scripts do.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


report = _module("report")
figures = _module("figures")


def test_every_published_result_renders(tmp_path: Path) -> None:
    published = sorted(PUBLISHED.glob("*.json"))
    assert published, "docs/bench has no results"
    (tmp_path / "bench").mkdir()
    for path in published:
        shutil.copy(path, tmp_path / "bench" / path.name)
    names = report.render(tmp_path)
    assert names == [n for n in report.ORDER if (PUBLISHED / f"{n}.json").exists()] + sorted(
        {p.stem for p in published} - set(report.ORDER)
    )
    page = (tmp_path / "benchmarks.md").read_text()
    for path in published:
        result = json.loads(path.read_text())
        assert f"## {result['title']}" in page
        assert f"![{result['title']}](bench/{path.stem}.png)" in page
        png = (tmp_path / "bench" / f"{path.stem}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        for case in result["cases"]:
            assert f"| {case['name']} |" in page


def test_what_emit_writes_renders_with_its_targets(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "vm_run.json"
    figures.emit(
        figures.Figures(
            bench="vm_run",
            title="a run",
            cases=[figures.Case("vm run", [7.0, 8.0, 9.0], "s")],
            ratios=[figures.Ratio("run / before", 0.49, 0.5)],
        ),
        out,
    )
    report.render(tmp_path)
    page = (tmp_path / "benchmarks.md").read_text()
    assert "| vm_run | run / before | 0.49 | <= 0.5 | yes |" in page
    assert "| vm run | 8 s | 7, 8, 9 |" in page
    assert "load average (1/5/15 min) at start" in page
    assert "Not in this run: vm_boot_overhead," in page


RATIO = {"name": "r", "value": 1.0, "target": None, "at_least": False, "met": None}


def _written(tmp_path: Path, **changes: object) -> Path:
    body = {
        "bench": "forward", "title": "t", "when": "2026-12-01T00:00:00Z",
        "machine": {"cpus": 2, "cpu": "", "memory_mib": 1, "kernel": "6", "python": "3.11"},
        "cases": [{"name": "direct", "unit": "MiB/s", "samples": [1.0], "median": 1.0}],
        "ratios": [], "notes": [],
    }  # fmt: skip
    body.update(changes)
    path = tmp_path / "bench" / "forward.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(body))
    return path


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"cases": []}, "no cases"),
        ({"cases": [{"name": "d", "unit": "s", "samples": [], "median": 1}]}, "has no samples"),
        ({"cases": [{"name": "d", "unit": "s", "samples": ["1"], "median": 1}]}, "not a number"),
        ({"cases": [{"name": "d", "unit": "s", "samples": [1]}]}, "case 0 has no 'median'"),
        ({"ratios": [{**RATIO, "value": True}]}, "'value' is bool"),
        ({"ratios": [{**RATIO, "met": "yes"}]}, "'met' is str"),
        ({"machine": {}}, "the machine has no cpus"),
        ({"bench": "density"}, "written by 'density', not 'forward'"),
    ],
)
def test_a_malformed_result_is_named_with_what_is_wrong(
    tmp_path: Path, changes: dict[str, object], said: str
) -> None:
    path = _written(tmp_path, **changes)
    with pytest.raises(report.Malformed, match=said) as err:
        report.render(tmp_path)
    assert str(path) in str(err.value)
    assert not (tmp_path / "benchmarks.md").exists()


def test_the_command_says_which_file_is_not_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _written(tmp_path)
    path.write_text('{"bench": "forward", "cases": [')  # cut off mid-write
    monkeypatch.setattr(sys, "argv", ["report.py", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        report.main()
    assert str(exited.value).startswith(f"bench/report.py: {path}: not readable as JSON (")


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    with pytest.raises(report.Malformed, match="run `make bench` first"):
        report.render(tmp_path)


def test_guest_exec_keeps_the_parts_it_did_not_measure_with_their_run(tmp_path: Path) -> None:
    guest_exec = _module("guest_exec")
    out = tmp_path / "guest_exec.json"
    figures.emit(
        figures.Figures(
            bench="guest_exec",
            title="t",
            cases=[
                figures.Case("banger vm exec NAME -- true", [500.0], "ms"),
                figures.Case("vm cp into the guest", [8.0], "MiB/s"),
                figures.Case("scp into the guest", [4.0], "MiB/s"),
            ],
            ratios=[
                figures.Ratio("vm exec / vm ssh", 0.4, 0.25),
                figures.Ratio("vm cp / scp throughput, into the guest", 2.0, 0.8, True),
            ],
        ),
        out,
    )
    cases, ratios, notes = guest_exec.carried(out, "in")
    assert [c.name for c in cases] == ["vm cp into the guest", "scp into the guest"]
    assert [(r.name, r.value, r.met) for r in ratios] == [
        ("vm cp / scp throughput, into the guest", 2.0, True)
    ]
    when = json.loads(out.read_text())["when"]
    assert notes[0].startswith(f"the in figures from an earlier run ({when}; load average")
    # Carried again by a later run: still the note of the run that measured them.
    figures.emit(figures.Figures("guest_exec", "t", cases, ratios, list(notes)), out)
    assert guest_exec.carried(out, "in")[2] == notes
    assert guest_exec.carried(out, "out") == ([], [], [])
