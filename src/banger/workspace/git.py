"""The host's side of a workspace: what git says about the checkout being copied.

Nothing here writes to the user's checkout, its index or its refs. A
snapshot of the working tree goes through a copy of the index (as
``git stash create`` does, the blobs of edited files land in the
repository's object store, where ``git gc`` collects them once unused);
its tree id is what dirty detection later compares against.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from banger import proc
from banger.errors import HostError, UserError


@dataclass(frozen=True)
class Checkout:
    root: Path
    git_dir: Path

    def git(self, *args: str, index: Path | None = None, input: bytes | None = None) -> bytes:
        env = {"GIT_INDEX_FILE": str(index)} if index is not None else None
        argv = ["git", "-C", str(self.root), "-c", "core.quotePath=off", *args]
        return proc.run(argv, env=env, input=input, timeout=None).stdout

    def text(self, *args: str, index: Path | None = None) -> str:
        return self.git(*args, index=index).decode(errors="replace").strip()


def open_checkout(path: Path) -> Checkout:
    """The git checkout at ``path`` (its top level), or a UserError saying it is none."""
    if not path.is_dir():
        raise UserError(
            f"{path} is not a directory",
            hint="give the path of a git checkout: banger vm workspace prepare NAME PATH",
        )
    try:
        root = proc.output(["git", "-C", str(path), "rev-parse", "--show-toplevel"]).strip()
        git_dir = proc.output(["git", "-C", root, "rev-parse", "--absolute-git-dir"]).strip()
    except HostError as exc:
        raise UserError(
            f"{path} is not a git checkout",
            hint="`git init` it and commit once, or give the path of a checkout:"
            " banger vm workspace prepare NAME PATH",
        ) from exc
    return Checkout(root=Path(root), git_dir=Path(git_dir))


def resolve_commit(co: Checkout, rev: str) -> str:
    """The full id of commit ``rev`` in the host's repository."""
    try:
        return co.text("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except HostError as exc:
        if rev == "HEAD":
            raise UserError(
                f"the checkout at {co.root} has no commit yet",
                hint=f"commit once (`git -C {co.root} commit`), then prepare again",
            ) from exc
        raise UserError(
            f"the checkout at {co.root} has no commit {rev!r}",
            hint=f"`git -C {co.root} log --oneline` lists its commits; `git fetch` brings others",
        ) from exc


def check_branch(co: Checkout, name: str) -> str:
    """``name`` if git takes it as a branch name (it also becomes a path under .git)."""
    result = proc.run(["git", "check-ref-format", "--branch", name], check=False)
    if result.returncode != 0 or name.startswith("-"):
        raise UserError(
            f"{name!r} is not a valid branch name",
            hint="see `git check-ref-format --help`; e.g. --branch try-fix",
        )
    return result.stdout.decode().strip()


def current_branch(co: Checkout) -> str | None:
    result = proc.run(
        ["git", "-C", str(co.root), "symbolic-ref", "--short", "-q", "HEAD"], check=False
    )
    name = result.stdout.decode().strip()
    return name or None


def snapshot(co: Checkout, index: Path, *, untracked: bool) -> str:
    """Stage the working tree as it is into a copy of the index at ``index``; its tree id.

    Tracked files with their uncommitted edits (and deletions); untracked ones
    only when asked; ignored ones never. The copy keeps the stat data of
    unchanged files, so git hashes only what changed.
    """
    real = Path(co.text("rev-parse", "--path-format=absolute", "--git-path", "index"))
    if real.exists():
        shutil.copyfile(real, index)
    co.git("-c", "core.splitIndex=false", "add", "-A" if untracked else "-u", index=index)
    return co.text("write-tree", index=index)


def index_of(co: Checkout, index: Path, rev: str) -> str:
    """An index at ``index`` holding commit ``rev``'s tree (for `--from REV`); its tree id."""
    co.git("read-tree", rev, index=index)
    return co.text("write-tree", index=index)


def listed(co: Checkout, index: Path) -> bytes:
    """The NUL-separated paths ``index`` holds, relative to the checkout's root."""
    return co.git("ls-files", "-z", "--cached", index=index)


def left_out(co: Checkout) -> Counter[str]:
    """Untracked files not ignored, counted by top-level directory (`.` for the root's)."""
    raw = co.git("ls-files", "-z", "--others", "--exclude-standard")
    counts: Counter[str] = Counter()
    for name in raw.decode(errors="replace").split("\0"):
        if name:
            top, sep, _ = name.partition("/")
            counts[f"{top}/" if sep else "."] += 1
    return counts


def write_pack(co: Checkout, pack_dir: Path, base: str, tree: str, *, full: bool) -> None:
    """A pack (with its .idx, so the guest hashes nothing) of what the guest's git needs.

    The base commit with its tree, or all its history (``full``), and the
    objects of the working tree as copied, so the guest's index is complete.
    """
    walk = [] if full else ["--no-walk"]
    objects = co.git("rev-list", "--objects", *walk, base, tree)
    pack_dir.mkdir(parents=True, exist_ok=True)
    co.git("pack-objects", "-q", "--window=0", str(pack_dir / "pack"), input=objects)


def identity(co: Checkout) -> tuple[str, str]:
    """Who commits in the guest: the host checkout's user, or a name that says banger."""

    def get(key: str) -> str:
        result = proc.run(["git", "-C", str(co.root), "config", "--get", key], check=False)
        return result.stdout.decode(errors="replace").strip()

    return get("user.name") or "banger workspace", get("user.email") or "banger@localhost"


def host_shallow(co: Checkout) -> str:
    path = co.git_dir / "shallow"
    return path.read_text() if path.exists() else ""


def changed(co: Checkout, old_tree: str, new_tree: str) -> list[tuple[str, str]]:
    """(status letter, path) for each file that differs between two trees."""
    raw = co.git("diff", "--name-status", "-z", "--no-renames", old_tree, new_tree)
    tokens = raw.decode(errors="replace").split("\0")
    return [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)]


def commits_between(co: Checkout, old: str, new: str) -> int:
    if old == new:
        return 0
    result = proc.run(
        ["git", "-C", str(co.root), "rev-list", "--count", f"{old}..{new}"], check=False
    )
    return int(result.stdout.decode().strip() or 0)


def has_object(co: Checkout, oid: str) -> bool:
    result = proc.run(["git", "-C", str(co.root), "cat-file", "-e", oid], check=False)
    return result.returncode == 0


def check_guest_path(path: str) -> str:
    """A guest path a workspace may live at: absolute, plain, on the guest's own disks."""
    norm = os.path.normpath(path)
    virtual = ("/proc", "/sys", "/dev", "/run", "/tmp/.banger")
    bad = (
        not path.startswith("/")
        or ".." in path.split("/")
        or norm == "/"
        or any(norm == v or norm.startswith(v + "/") for v in virtual)
        or any(c in path for c in "\n\0")
    )
    if bad:
        raise UserError(
            f"guest path {path!r} is not a directory a workspace can live in",
            hint="give an absolute path on the guest's disks, e.g. --guest-path /root/project",
        )
    return norm
