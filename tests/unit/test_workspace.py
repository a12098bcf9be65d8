"""Workspaces through a channel that runs the guest's side on this host.

Everything but the transport is real: git and tar on both ends, the guest's
shell scripts as the guest runs them, a real repository with every kind of
change. The e2e module does the same through a VM's SSH.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from banger.api.shapes import Workspace, WorkspaceMode
from banger.errors import BangerError, UserError
from banger.workspace import copy
from banger.workspace.channel import Stream, in_guest_argv
from banger.workspace.export import drift, export, parse_name_status
from banger.workspace.prepare import PrepareOptions, left_out_line, prepare


class LocalChannel:
    """The GuestChannel seam, answered by this host's own sh, git and tar."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> subprocess.Popen[bytes]:
        full = in_guest_argv(argv, cwd, env)
        self.calls.append(full)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        clean["HOME"] = "/nonexistent"
        return subprocess.Popen(full, stdin=stdin, stdout=stdout, stderr=stderr, env=clean)

    def run(self, argv: Sequence[str], **kw: object) -> int:
        return self.start(argv, **kw).wait()  # type: ignore[arg-type]

    def put_tar(
        self, guest_dir: str, source: Stream, *, stderr: Stream = None
    ) -> subprocess.Popen[bytes]:
        script = 'mkdir -p -- "$1" && exec tar -x -i --no-same-owner -p -f - -C "$1"'
        return self.start(["sh", "-c", script, "x", guest_dir], stdin=source, stderr=stderr)

    def get_tar(
        self, guest_dir: str, names: Sequence[str], sink: Stream, *, stderr: Stream = None
    ) -> subprocess.Popen[bytes]:
        return self.start(["tar", "-c", "-f", "-", "-C", guest_dir, "--", *names], stdout=sink)


def git(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "t@example.invalid", cwd=path)
    git("config", "user.name", "t", cwd=path)
    (path / "src").mkdir()
    for n in range(20):
        (path / "src" / f"m{n}.py").write_text(f"value = {n}\n")
    (path / "README").write_text("readme\n")
    (path / "run.sh").write_text("#!/bin/sh\n")
    (path / ".gitignore").write_text("build/\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    (path / "README").write_text("readme, edited on the host\n")  # uncommitted, travels
    (path / "build").mkdir()
    (path / "build" / "out.o").write_text("ignored")  # ignored, never travels
    (path / "notes").mkdir()
    (path / "notes" / "todo").write_text("untracked")
    return path


def record_of(done, vm: str = "dev") -> Workspace:  # type: ignore[no-untyped-def]
    data = done.record.to_json()
    return Workspace.from_json({**data, "vm": vm, "prepared_at": "now"})


def test_prepare_copies_the_working_tree_with_a_clean_git_and_leaves_out_the_rest(
    repo: Path, tmp_path: Path
):
    guest = tmp_path / "guest" / "proj"
    done = prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    assert (guest / "README").read_text() == "readme, edited on the host\n"
    assert not (guest / "build").exists() and not (guest / "notes").exists()
    assert done.files == 23 and done.left_out == {"notes/": 1}
    assert left_out_line(done.left_out) == (
        "left out 1 untracked file (notes/ 1); --include-untracked copies them"
    )
    assert git("rev-parse", "HEAD", cwd=guest) == git("rev-parse", "HEAD", cwd=repo)
    assert git("symbolic-ref", "--short", "HEAD", cwd=guest) == "main"
    # The host's uncommitted edit arrives staged; nothing else differs.
    assert git("status", "--porcelain", cwd=guest) == "M  README"
    assert (guest / ".git" / "shallow").read_text().strip() == done.record.base_commit
    assert not list(guest.parent.glob(".proj.banger-new"))


def test_prepare_full_mode_carries_the_history_and_untracked_when_asked(repo: Path, tmp_path: Path):
    (repo / "src" / "m0.py").write_text("value = 'second'\n")
    git("commit", "-q", "-am", "two", cwd=repo)
    guest = tmp_path / "g"
    opts = PrepareOptions(
        path=repo, guest_path=str(guest), mode=WorkspaceMode.FULL, include_untracked=True
    )
    done = prepare(LocalChannel(), opts)
    assert git("rev-list", "--count", "HEAD", cwd=guest) == "2"
    assert (guest / "notes" / "todo").exists() and done.left_out == {}


def test_prepare_replaces_an_earlier_copy_only_when_the_new_one_is_whole(
    repo: Path, tmp_path: Path
):
    guest = tmp_path / "g"
    prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    (guest / "guest-only").write_text("x")
    prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    assert not (guest / "guest-only").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "proj"]


def test_export_carries_every_kind_of_change_and_applies_at_the_base(repo: Path, tmp_path: Path):
    guest = tmp_path / "g"
    done = prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    script = """set -e
    echo more >> src/m1.py
    printf '\\000\\001binary' > blob.bin
    rm src/m2.py
    git mv -k src/m3.py src/renamed.py
    chmod +x src/m4.py
    ln -s README link
    git -c user.name=g -c user.email=g@x add src/m1.py blob.bin
    git -c user.name=g -c user.email=g@x commit -q -m guest
    """
    subprocess.run(["sh", "-c", script], cwd=guest, check=True)
    out = export(LocalChannel(), record_of(done), "dev", None)
    kinds = {(c.status, c.path) for c in out.changes}
    assert {("M", "README"), ("M", "src/m1.py"), ("A", "blob.bin"), ("D", "src/m2.py")} <= kinds
    assert ("R", "src/renamed.py") in kinds and ("A", "link") in kinds
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True)
    patch = tmp_path / "p.patch"
    patch.write_bytes(out.patch)
    git("apply", "--check", str(patch), cwd=fresh)
    git("apply", str(patch), cwd=fresh)
    assert os.readlink(fresh / "link") == "README"
    assert os.access(fresh / "src" / "m4.py", os.X_OK)
    git("add", "-A", cwd=fresh)
    subprocess.run(["git", "add", "-A"], cwd=guest, check=True)
    assert git("write-tree", cwd=fresh) == git("write-tree", cwd=guest)


def test_export_of_no_change_is_empty(repo: Path, tmp_path: Path):
    guest = tmp_path / "g"
    done = prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    # The host's uncommitted README edit is a change from the base commit.
    out = export(LocalChannel(), record_of(done), "dev", None)
    assert [c.path for c in out.changes] == ["README"]
    git("commit", "-q", "-am", "readme", cwd=repo)
    done = prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    out = export(LocalChannel(), record_of(done), "dev", None)
    assert out.changes == [] and out.patch == b""


def test_drift_says_nothing_before_a_host_edit_and_what_changed_after(repo: Path, tmp_path: Path):
    done = prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(tmp_path / "g")))
    ws = record_of(done)
    assert drift(ws) is None
    (repo / "src" / "m5.py").write_text("edited\n")
    assert drift(ws) == "modified src/m5.py"
    git("commit", "-q", "-am", "host commit", cwd=repo)
    assert drift(ws) == "1 new commit; modified src/m5.py"


def test_bad_input_changes_nothing(repo: Path, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UserError, match="is not a git checkout"):
        prepare(LocalChannel(), PrepareOptions(path=plain, guest_path=str(tmp_path / "g")))
    for bad in ("relative/path", "/proc/x", "/", "/root/../etc"):
        with pytest.raises(UserError, match="guest path"):
            prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=bad))
    with pytest.raises(UserError, match="has no commit"):
        prepare(LocalChannel(), PrepareOptions(path=repo, guest_path="/x", from_rev="nope"))
    with pytest.raises(UserError, match="not a valid branch name"):
        prepare(LocalChannel(), PrepareOptions(path=repo, guest_path="/x", branch="../../x"))
    empty = tmp_path / "empty"
    git("init", "-q", str(empty), cwd=tmp_path)
    with pytest.raises(UserError, match="has no commit yet"):
        prepare(LocalChannel(), PrepareOptions(path=empty, guest_path="/x"))
    assert not (tmp_path / "g").exists()


def test_a_stream_cut_short_leaves_the_old_copy(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from banger.workspace import prepare as module

    guest = tmp_path / "g"
    prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    (guest / "kept").write_text("old copy")
    # A host side that sends one whole file, then fails.
    cut = ["sh", "-c", f"tar -c -f - -C {repo} README; exit 1"]
    monkeypatch.setattr(module, "_stream_argv", lambda *a: cut)
    with pytest.raises(BangerError, match="copying the checkout into the guest failed"):
        prepare(LocalChannel(), PrepareOptions(path=repo, guest_path=str(guest)))
    assert (guest / "kept").read_text() == "old copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "proj"]


def test_parse_name_status_reads_renames_and_stops_at_the_empty_field():
    raw = b"M\0a\0R100\0old\0new\0D\0gone\0\0diff --git ..."
    changes, start = parse_name_status(raw)
    assert [(c.status, c.path, c.old) for c in changes] == [
        ("M", "a", None),
        ("R", "new", "old"),
        ("D", "gone", None),
    ]
    assert raw[start:] == b"diff --git ..."


def test_cp_both_ways_like_docker_cp(tmp_path: Path):
    src = tmp_path / "tool.sh"
    src.write_text("hi")
    src.chmod(0o751)
    guest = tmp_path / "guest"
    guest.mkdir()
    landed = copy.to_guest(LocalChannel(), src, str(guest), "dev")
    assert landed == f"{guest}/tool.sh" and (guest / "tool.sh").stat().st_mode & 0o777 == 0o751
    copy.to_guest(LocalChannel(), src, str(guest / "renamed"), "dev")
    assert (guest / "renamed").read_text() == "hi"
    back = copy.from_guest(LocalChannel(), str(guest / "renamed"), tmp_path / "out", "dev")
    assert back.read_text() == "hi" and back.stat().st_mode & 0o777 == 0o751
    with pytest.raises(UserError, match="no directory"):
        copy.to_guest(LocalChannel(), src, str(tmp_path / "missing" / "x"), "dev")
    assert [p.name for p in guest.iterdir() if p.name.startswith(".banger")] == []


def test_cp_spec_parsing():
    assert copy.parse("dev:/root/x") == copy.Spec("dev", "/root/x")
    assert copy.parse("./dev:x") == copy.Spec(None, "./dev:x")
    assert copy.parse("/abs/path") == copy.Spec(None, "/abs/path")
    assert copy.parse("dev:") == copy.Spec("dev", ".")


def test_prepare_from_a_revision_copies_that_commit_on_a_new_branch(repo: Path, tmp_path: Path):
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "src" / "m0.py").write_text("later\n")
    git("commit", "-q", "-am", "later", cwd=repo)
    guest = tmp_path / "g"
    opts = PrepareOptions(path=repo, guest_path=str(guest), from_rev=first, branch="fix")
    done = prepare(LocalChannel(), opts)
    assert done.record.base_commit == first and done.record.branch == "fix"
    assert (guest / "src" / "m0.py").read_text() == "value = 0\n"
    assert (guest / "README").read_text() == "readme\n"  # the commit's, not the working tree's
    assert git("symbolic-ref", "--short", "HEAD", cwd=guest) == "fix"
    assert git("status", "--porcelain", cwd=guest) == ""
    # Dirty detection watches the host checkout as it was, not the revision copied.
    ws = record_of(done)
    assert drift(ws) is None
    (repo / "src" / "m1.py").write_text("edited\n")
    assert drift(ws) == "modified src/m1.py"
