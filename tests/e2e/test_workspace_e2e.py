"""Workspaces end to end: the project's own repository into a real VM and a patch back out.

One VM serves the whole module (it boots once: CI time matters); the tests
run in file order and build on each other's state only where named.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Banger

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
VM = "ws-e2e"

# Every kind of change export must carry: an edit, a new binary file, a
# deletion, a rename, a mode change, a symlink; part of it committed.
CHANGES = r"""set -e
echo 'edited in the guest' >> README.md
printf '\000\001\002\377binary' > new.bin
rm Makefile
mv pyproject.toml renamed.toml
chmod +x bench/README.md
ln -s README.md link-to-readme
git add README.md new.bin
git commit -q -m 'part of the work, committed in the guest'
"""

GUEST_TREE = (
    'i=$(mktemp); cp .git/index "$i"; GIT_INDEX_FILE=$i git add -A;'
    ' GIT_INDEX_FILE=$i git write-tree; rm -f "$i"'
)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def ws(banger_env: Banger, image: str, tmp_path_factory: pytest.TempPathFactory) -> Banger:
    """One running VM for the module, and a clone of this project's repository."""
    banger_env.run("vm", "delete", VM)
    banger_env.create(VM)
    yield banger_env
    banger_env.run("vm", "delete", VM)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ws") / "banger"
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(path)], check=True)
    git("config", "user.email", "e2e@example.invalid", cwd=path)
    git("config", "user.name", "e2e", cwd=path)
    (path / "untracked-dir").mkdir()
    for n in range(3):
        (path / "untracked-dir" / f"f{n}").write_text("x")
    return path


def test_prepare_copies_the_checkout_and_reports_what_it_left_out(ws: Banger, repo: Path):
    result = ws.run("vm", "workspace", "prepare", VM, str(repo))
    assert result.returncode == 0, result.stderr
    assert f"prepared /root/banger in {VM}" in result.stdout
    assert "left out 3 untracked files (untracked-dir/ 3)" in result.stdout
    status = ws.run("vm", "exec", VM, "--", "git", "status", "--porcelain")
    assert status.returncode == 0, status.stderr
    assert status.stdout == "?? untracked-dir/\n" or status.stdout == ""
    head = ws.run("vm", "exec", VM, "--", "git", "rev-parse", "HEAD")
    assert head.stdout.strip() == git("rev-parse", "HEAD", cwd=repo)
    recorded = ws.json("vm", "show", VM)
    assert isinstance(recorded, dict)


def test_dirty_detection_fires_after_a_host_edit_and_not_before(ws: Banger, repo: Path):
    clean = ws.run("vm", "exec", VM, "--", "true")
    assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr
    readme = repo / "README.md"
    original = readme.read_text()
    readme.write_text(original + "host edit\n")
    try:
        dirty = ws.run("vm", "exec", VM, "--", "true")
        assert dirty.returncode == 0
        assert "changed since it was copied" in dirty.stderr and "README.md" in dirty.stderr
        assert f"banger vm workspace prepare {VM}" in dirty.stderr
    finally:
        readme.write_text(original)


def test_exec_streams_apart_passes_stdin_and_keeps_the_exit_code(ws: Banger):
    result = subprocess.run(
        [str(BIN / "banger"), "vm", "exec", VM, "--env", "X=42", "--",
         "sh", "-c", 'cat; echo "out $X $PWD"; echo err >&2; exit 7'],
        input="from stdin\n", env=ws.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 7
    assert result.stdout == "from stdin\nout 42 /root/banger\n"
    assert result.stderr.strip().endswith("err")


def test_export_applies_on_a_fresh_clone_at_the_base_and_gives_the_guest_tree(
    ws: Banger, repo: Path, tmp_path: Path
):
    edit = ws.run("vm", "exec", VM, "--", "sh", "-c", CHANGES)
    assert edit.returncode == 0, edit.stderr
    patch = tmp_path / "changes.patch"
    result = ws.run("vm", "workspace", "export", VM, "-o", str(patch))
    assert result.returncode == 0, result.stderr
    for line in ("M README.md", "A new.bin", "D Makefile", "A link-to-readme"):
        assert line in result.stdout
    assert "pyproject.toml -> renamed.toml" in result.stdout
    data = ws.json("vm", "workspace", "export", VM)
    assert isinstance(data, dict)
    assert data["base_commit"] == git("rev-parse", "HEAD", cwd=repo)
    assert "new.bin" in data["changed_files"]

    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True)
    git("checkout", "-q", data["base_commit"], cwd=fresh)
    git("apply", "--check", str(patch), cwd=fresh)
    git("apply", str(patch), cwd=fresh)
    assert os.readlink(fresh / "link-to-readme") == "README.md"
    assert os.access(fresh / "bench" / "README.md", os.X_OK)
    assert (fresh / "new.bin").read_bytes() == b"\x00\x01\x02\xffbinary"
    git("add", "-A", cwd=fresh)
    host_tree = git("write-tree", cwd=fresh)
    guest_tree = ws.run("vm", "exec", VM, "--", "sh", "-c", GUEST_TREE)
    assert guest_tree.stdout.strip() == host_tree


def test_no_change_is_an_empty_patch(ws: Banger, repo: Path):
    assert ws.run("vm", "workspace", "prepare", VM, str(repo)).returncode == 0
    result = ws.run("vm", "workspace", "export", VM)
    assert result.returncode == 0 and result.stdout == ""
    assert "no changes" in result.stderr


def test_cp_both_ways_keeps_modes(ws: Banger, tmp_path: Path):
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o751)
    into = ws.run("vm", "cp", str(tool), f"{VM}:/root/")
    assert into.returncode == 0, into.stderr
    mode = ws.run("vm", "exec", VM, "--", "stat", "-c", "%a", "/root/tool.sh")
    assert mode.stdout.strip() == "751"
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "a").write_text("a")
    assert ws.run("vm", "cp", str(tmp_path / "tree"), f"{VM}:/root/tree-copy").returncode == 0
    back = tmp_path / "back"
    out = ws.run("vm", "cp", f"{VM}:/root/tree-copy", str(back))
    assert out.returncode == 0, out.stderr
    assert (back / "sub" / "a").read_text() == "a"
    tool_back = ws.run("vm", "cp", f"{VM}:/root/tool.sh", str(tmp_path / "tool-back"))
    assert tool_back.returncode == 0
    assert (tmp_path / "tool-back").stat().st_mode & 0o777 == 0o751


def test_bad_input_is_one_line_with_a_hint_and_changes_nothing(
    ws: Banger, repo: Path, tmp_path: Path
):
    cases = [
        (["vm", "workspace", "prepare", VM, str(tmp_path)], "is not a git checkout"),
        (["vm", "workspace", "prepare", VM, str(repo), "--guest-path", "/proc/x"], "guest path"),
        (["vm", "workspace", "export", VM, "--base-commit", "f" * 40], "has no commit"),
        (["vm", "cp", str(repo / "README.md"), f"{VM}:/nowhere/at/all"], "no directory"),
        (["vm", "workspace", "prepare", "no-such-vm", str(repo)], "no-such-vm"),
    ]
    for argv, words in cases:
        result = ws.run(*argv)
        assert result.returncode != 0, argv
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and words in lines[0], result.stderr
        assert lines[1].startswith("hint: "), result.stderr
    listing = ws.run("vm", "exec", VM, "--cwd", "/root", "--", "ls", "-a")
    assert ".banger.banger-new" not in listing.stdout and "nowhere" not in listing.stdout


def test_ssh_config_install_works_with_ssh_and_uninstall_restores_bytes(ws: Banger, tmp_path: Path):
    config = tmp_path / "ssh_config"
    before = b"Host example\n  User nobody\n# no newline at the end"
    config.write_bytes(before)
    installed = ws.run("ssh-config", "--install", "--ssh-config", str(config))
    assert installed.returncode == 0, installed.stderr
    ssh = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{VM}.vm", "true"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert ssh.returncode == 0, ssh.stderr
    removed = ws.run("ssh-config", "--uninstall", "--ssh-config", str(config))
    assert removed.returncode == 0, removed.stderr
    assert config.read_bytes() == before
    fresh = tmp_path / "none" / "config"
    assert ws.run("ssh-config", "--install", "--ssh-config", str(fresh)).returncode == 0
    assert ws.run("ssh-config", "--uninstall", "--ssh-config", str(fresh)).returncode == 0
    assert not fresh.exists()


def test_completion_script_loads_in_bash_and_completes_a_vm_name(ws: Banger):
    script = ws.run("completion", "bash")
    assert script.returncode == 0
    driver = (
        f"{script.stdout}\n"
        'COMP_WORDS=(banger vm show "ws-"); COMP_CWORD=3; _banger_completion banger;'
        ' printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**ws.env, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "--norc", "-c", driver], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert VM in result.stdout.split()


def test_run_with_workspace_writes_the_patch_and_keeps_the_exit_code(
    ws: Banger, repo: Path, tmp_path: Path
):
    patch = tmp_path / "run.patch"
    result = ws.run(
        "vm", "run", "--workspace", str(repo), "--export", str(patch), "--",
        "sh", "-c", "echo from-run >> README.md; exit 3",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    text = patch.read_text()
    assert "+from-run" in text and "README.md" in text
    assert json.dumps(ws.json("vm", "list")).count('"name"') == 1  # the run's VM is gone
