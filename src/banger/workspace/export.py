"""The guest's changes as one patch, and whether the host checkout moved since prepare.

Export runs git in the guest against a copy of its index: every file of the
working tree is staged there (committed or not, new, deleted, renamed,
binary, a mode change, a symlink) and diffed against the base commit with
``--binary --full-index``, which ``git apply`` on the host takes as is.
The guest's own index and history are left as they were.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from banger.api.shapes import Workspace
from banger.errors import HostError, NotFound, UserError
from banger.workspace import git
from banger.workspace.channel import GuestChannel, capture

_EXPORT = """cd -- "$1" 2>/dev/null || { echo "no workspace at $1" >&2; exit 3; }
base=$2
git cat-file -e "$base^{commit}" 2>/dev/null || {
  echo "the workspace's history does not reach $base" >&2; exit 4; }
i=$(mktemp) || exit 5
trap 'rm -f "$i"' EXIT
[ -f .git/index ] && cp .git/index "$i"
export GIT_INDEX_FILE="$i"
git add -A || exit 5
git -c core.quotePath=off diff --cached --name-status -z -M "$base" || exit 5
printf '\\0'
git diff --cached --binary --full-index -M --no-color --no-ext-diff --no-textconv \\
  --src-prefix=a/ --dst-prefix=b/ "$base" || exit 5
"""


@dataclass(frozen=True)
class Change:
    status: str  # git's letter: A, M, D, T, R (renamed from ``old``)
    path: str
    old: str | None = None


@dataclass(frozen=True)
class Exported:
    base_commit: str
    changes: list[Change]
    patch: bytes


def parse_name_status(raw: bytes) -> tuple[list[Change], int]:
    """``git diff --name-status -z`` entries up to the empty field that ends them."""
    changes: list[Change] = []
    pos = 0
    while True:
        end = raw.index(b"\0", pos)
        status = raw[pos:end].decode()
        pos = end + 1
        if not status:
            return changes, pos
        first_end = raw.index(b"\0", pos)
        first = raw[pos:first_end].decode(errors="replace")
        pos = first_end + 1
        if status[0] in "RC":
            second_end = raw.index(b"\0", pos)
            second = raw[pos:second_end].decode(errors="replace")
            pos = second_end + 1
            changes.append(Change(status[0], second, old=first))
        else:
            changes.append(Change(status[0], first))


def export(channel: GuestChannel, ws: Workspace, vm: str, base_commit: str | None) -> Exported:
    """One patch of every change in the guest's workspace since ``base_commit`` (or prepare's)."""
    base = ws.base_commit
    if base_commit is not None:
        co = git.open_checkout(Path(ws.host_path))
        base = git.resolve_commit(co, base_commit)
    code, out, err = capture(channel, ["sh", "-c", _EXPORT, "banger", ws.guest_path, base])
    if code == 3:
        raise NotFound(
            f"VM {vm} has no workspace at {ws.guest_path}",
            hint=f"copy one in with `banger vm workspace prepare {vm} {ws.host_path}`",
        )
    if code == 4:
        raise UserError(
            f"the workspace in {vm} does not have commit {base[:12]} (it was prepared shallow)",
            hint=f"prepare it with its history: banger vm workspace prepare {vm} --mode full",
        )
    if code != 0:
        raise HostError(f"exporting the workspace of {vm} failed: {err or f'exit {code}'}")
    changes, start = parse_name_status(out)
    return Exported(base_commit=base, changes=changes, patch=out[start:])


def drift(ws: Workspace) -> str | None:
    """What changed in the host checkout since prepare, in a few words; None when nothing."""
    root = Path(ws.host_path)
    if not root.is_dir():
        return None
    co = git.open_checkout(root)
    with tempfile.TemporaryDirectory(prefix="banger-ws-") as tmp:
        tree = git.snapshot(co, Path(tmp) / "index", untracked=ws.include_untracked)
    head = git.resolve_commit(co, "HEAD")
    # Workspaces recorded before host_head existed were copied from HEAD.
    was = ws.host_head or ws.base_commit
    if tree == ws.tree and head == was:
        return None
    parts = []
    commits = git.commits_between(co, was, head) if git.has_object(co, head) else 0
    if commits:
        parts.append(f"{commits} new commit{'s' if commits != 1 else ''}")
    words = {"M": "modified", "A": "added", "D": "deleted", "T": "type changed"}
    files = git.changed(co, ws.tree, tree) if tree != ws.tree else []
    for letter, word in words.items():
        paths = [p for s, p in files if s == letter]
        if paths:
            shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            parts.append(f"{word} {shown}")
    return "; ".join(parts) or "HEAD moved"
