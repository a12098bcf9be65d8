"""The Python SDK and ``banger mcp`` against real VMs.

The README's example runs as written (taken from the README itself) in a
small git checkout; each scenario is a Python process of its own with the
e2e environment, as a user's script would be.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Banger
from tests.mcp_client import mcp_session, text_of, value_of

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python SDK", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's Python SDK section has no example"
    return found.group(1)


def python(banger: Banger, code: str, cwd: Path) -> dict[str, object]:
    """Run ``code`` as a script; the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=banger.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.invalid"],
                 ["config", "user.name", "t"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README").write_text("a project\n")
    (repo / "Makefile").write_text("test:\n\techo testing\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "first"], cwd=repo, check=True)
    return repo


def vm_names(banger: Banger) -> list[str]:
    return [vm["name"] for vm in banger.json("vm", "list")]  # type: ignore[union-attr, index]


# Runs the example in a namespace of its own and reports what it left there,
# so a step that raises still shows what the steps before it did.
HARNESS = """
import json
ns = {}
try:
    exec(CODE, ns)
except Exception as exc:
    ns["error"] = f"{type(exc).__name__}: {exc}"
r, patch, vm, child = (ns.get(k) for k in ("r", "patch", "vm", "child"))
print(json.dumps({
    "vm": vm.name if vm else None,
    "child": child.name if child else None,
    "exit_code": r.exit_code if r else None,
    "stderr": r.stderr if r else None,
    "changes": [c.path for c in patch.changes] if patch else None,
    "patch": patch.patch.decode() if patch else None,
    "error": ns.get("error"),
}))
"""


def test_the_readme_example_runs_as_written(banger: Banger, checkout: Path):
    seen = python(banger, f"CODE = {readme_example()!r}\n{HARNESS}", checkout)
    assert seen["vm"] is not None
    # pytest is not in the Debian image: the guest's answer, as a shell gives it.
    assert seen["exit_code"] == 127 and "pytest" in str(seen["stderr"])
    assert seen["changes"] == [] and seen["patch"] == ""
    assert vm_names(banger) == []  # the VM (and a fork) went with the with block
    assert seen["error"] is None  # fork included
    assert seen["child"] not in (None, seen["vm"])


def test_a_failing_command_and_a_raising_body(banger: Banger, checkout: Path):
    code = """
import json, banger
seen = {}
try:
    with banger.VM(image="debian-bookworm") as vm:
        seen["vm"] = vm.name
        r = vm.commands.run("echo partial; echo 'it broke' >&2; exit 3")
        seen.update(exit_code=r.exit_code, stdout=r.stdout, stderr=r.stderr)
        vm.files.write("/root/notes.txt", "hi")
        seen["notes"] = vm.files.read("/root/notes.txt")
        seen["os"] = vm.files.read("/etc/os-release")
        raise RuntimeError("the body failed")
except RuntimeError as exc:
    seen["raised"] = str(exc)
print(json.dumps(seen))
"""
    seen = python(banger, code, checkout)
    assert (seen["exit_code"], seen["stdout"], seen["stderr"]) == (3, "partial\n", "it broke\n")
    assert seen["notes"] == "hi"
    assert "Debian" in str(seen["os"])
    assert seen["raised"] == "the body failed"
    assert vm_names(banger) == []  # deleted although the body raised


def test_the_mcp_flow_against_a_real_vm(banger: Banger, checkout: Path):
    async def main() -> dict[str, object]:
        out: dict[str, object] = {}
        async with mcp_session(banger.env) as s:
            made = value_of(await s.call_tool("create_vm", {"workspace": str(checkout)}))
            vm = made["vm"]
            out["made"] = made
            out["uname"] = value_of(await s.call_tool(
                "run_command", {"vm": vm, "command": "uname -a"}))  # fmt: skip
            await s.call_tool("write_file", {"vm": vm, "path": f"{made['workspace']}/NEW",
                                             "content": "made by the model\n"})  # fmt: skip
            out["read"] = value_of(await s.call_tool(
                "read_file", {"vm": vm, "path": f"{made['workspace']}/NEW"}))  # fmt: skip
            out["patch"] = value_of(await s.call_tool("export_patch", {"vm": vm}))
            out["listed"] = value_of(await s.call_tool("list_vms", {}))
            out["deleted"] = value_of(await s.call_tool("delete_vm", {"vm": vm}))
            missing = await s.call_tool("read_file", {"vm": vm, "path": "/etc/hostname"})
            out["missing"] = (missing.is_error, text_of(missing))
        return out

    out = asyncio.run(main())
    made = out["made"]
    assert isinstance(made, dict)
    uname = out["uname"]
    assert isinstance(uname, dict)
    assert uname["exit_code"] == 0 and uname["stdout"].startswith("Linux ")
    assert out["read"] == "made by the model\n"
    patch = out["patch"]
    assert isinstance(patch, dict)
    assert patch["changed_files"] == ["A NEW"]
    assert "+made by the model" in patch["patch"]
    assert made["vm"] in [v["vm"] for v in out["listed"]]  # type: ignore[union-attr, index]
    assert out["deleted"] == f"deleted {made['vm']}"
    is_error, text = out["missing"]  # type: ignore[misc]
    assert is_error and f"'{made['vm']}'" in text and "hint: " in text
    assert vm_names(banger) == []
