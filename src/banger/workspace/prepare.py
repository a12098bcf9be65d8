"""Copy a host git checkout into a guest in one stream: its working tree and a ready .git.

The guest gets one tar over one connection: the files of the working tree
as they are (uncommitted edits included), then a ``.git`` built on the host
with a pack *and its index* (so the guest hashes nothing on arrival), refs
at the base commit, a ``shallow`` file when only the base commit travels,
and a git index whose stat data match the files as tar restores them
(``core.checkStat=minimal``: size and whole-second mtime), so the first
``git status`` in the guest reads no file. Under software emulation the
guest's CPU is the slow part of a copy; this leaves it only the unpacking.

Nothing half-copied is left in the workspace: the stream lands beside it
and is renamed over it only when complete.
"""

from __future__ import annotations

import posixpath
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from banger import proc
from banger.api.shapes import WorkspaceMode, WorkspaceRecord
from banger.errors import HostError
from banger.workspace import git
from banger.workspace.channel import GuestChannel

# The guest's whole side, over one connection: receive beside the target,
# check the stream arrived to its last member (the marker, sent last) and
# that the copy's HEAD resolves, then rename it over the target.
_RECEIVE = """new=$1; dest=$2; old=$2.banger-old
fail() { rm -rf -- "$new"; echo "$1" >&2; exit 1; }
rm -rf -- "$new" && mkdir -p -- "$new" || fail "cannot write $new"
tar -x -i --no-same-owner -p -f - -C "$new" || fail "the stream did not extract"
[ -f "$new/.banger-complete" ] || fail "the stream ended early"
rm -f -- "$new/.banger-complete"
git -C "$new" rev-parse -q --verify HEAD >/dev/null || fail "git cannot read the copy"
rm -rf -- "$old"
if [ -e "$dest" ] || [ -L "$dest" ]; then mv -- "$dest" "$old" || fail "cannot move $dest"; fi
mv -- "$new" "$dest" || fail "cannot rename into $dest"
rm -rf -- "$old"
"""
_MARKER = ".banger-complete"


@dataclass(frozen=True)
class PrepareOptions:
    path: Path
    guest_path: str | None = None
    branch: str | None = None
    from_rev: str | None = None
    mode: WorkspaceMode = WorkspaceMode.SHALLOW
    include_untracked: bool = False


@dataclass(frozen=True)
class Prepared:
    record: WorkspaceRecord
    files: int
    left_out: Counter[str]


def _config(name: str, email: str) -> str:
    return (
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        # tar restores size and mtime, not inode, ctime or owner.
        "\tcheckStat = minimal\n\ttrustctime = false\n"
        f"[user]\n\tname = {name}\n\temail = {email}\n"
    )


def build_git_dir(
    co: git.Checkout, dest: Path, index: Path, base: str, tree: str, opts: PrepareOptions
) -> str | None:
    """The guest's ``.git`` at ``dest``; returns the branch it checks out (None: detached)."""
    if opts.branch:
        branch: str | None = git.check_branch(co, opts.branch)
    else:
        branch = git.current_branch(co) if opts.from_rev is None else None
    for sub in ("objects/info", "refs/heads", "refs/tags"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    git.write_pack(co, dest / "objects" / "pack", base, tree, full=opts.mode == WorkspaceMode.FULL)
    if branch:
        ref = dest / "refs" / "heads" / branch
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(base + "\n")
        (dest / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    else:
        (dest / "HEAD").write_text(base + "\n")
    shallow = base + "\n" if opts.mode == WorkspaceMode.SHALLOW else git.host_shallow(co)
    if shallow:
        (dest / "shallow").write_text(shallow)
    (dest / "config").write_text(_config(*git.identity(co)))
    # Written last, so its mtime is after every file's: git then trusts the
    # stat data in it instead of re-reading files as "racily clean".
    (dest / "index").write_bytes(index.read_bytes())
    return branch


def _stream_argv(co: git.Checkout, names: Path, stage: Path) -> list[str]:
    return [
        "tar",
        "-c",
        "-f",
        "-",
        "--null",
        "--no-recursion",
        "--verbatim-files-from",
        "-C",
        str(co.root),
        "-T",
        str(names),
        "--recursion",
        "-C",
        str(stage),
        ".git",
        _MARKER,
    ]


def _send(channel: GuestChannel, producers: list[list[str]], staging: str, dest: str) -> None:
    """Run each producer in turn into the guest's receiving end; raise if either side failed."""
    with tempfile.TemporaryFile() as err:
        guest = channel.start(
            ["sh", "-c", _RECEIVE, "banger", staging, dest], stdin=subprocess.PIPE, stderr=err
        )
        assert guest.stdin is not None
        failed = ""
        try:
            for argv in producers:
                child = proc.popen(argv, stdout=guest.stdin, stderr=subprocess.PIPE)
                _, child_err = child.communicate()
                if child.returncode != 0:
                    failed = f"`{argv[0]}` on the host: {child_err.decode(errors='replace')}"
                    break
        finally:
            guest.stdin.close()
            code = guest.wait()
        err.seek(0)
        if failed or code != 0:
            detail = failed or err.read().decode(errors="replace").strip() or f"exit {code}"
            raise HostError(
                f"copying the checkout into the guest failed: {detail.strip()[-300:]}",
                hint="nothing was replaced in the guest; check `banger vm health` and retry",
            )


def prepare(
    channel: GuestChannel, opts: PrepareOptions, say: Callable[[str], None] = lambda _: None
) -> Prepared:
    """Copy the checkout at ``opts.path`` into the guest; what to record and what was left out.

    ``say`` hears one line before the stream starts (it can take a while).
    """
    co = git.open_checkout(opts.path)
    guest_path = git.check_guest_path(opts.guest_path or f"/root/{co.root.name}")
    with tempfile.TemporaryDirectory(prefix="banger-ws-") as tmp_name:
        tmp = Path(tmp_name)
        index = tmp / "index"
        host_head = git.resolve_commit(co, "HEAD")
        if opts.from_rev is not None:
            base = git.resolve_commit(co, opts.from_rev)
            tree = git.index_of(co, index, base)
            # What the checkout holds now, for dirty detection: not REV's tree.
            host_tree = git.snapshot(co, tmp / "host-index", untracked=opts.include_untracked)
        else:
            base = host_head
            tree = host_tree = git.snapshot(co, index, untracked=opts.include_untracked)
        names = git.listed(co, index)
        (tmp / "names").write_bytes(names)
        branch = build_git_dir(co, tmp / "stage" / ".git", index, base, tree, opts)
        (tmp / "stage" / _MARKER).write_bytes(b"")
        parent, leaf = posixpath.split(guest_path)
        staging = posixpath.join(parent, f".{leaf}.banger-new")
        if opts.from_rev is not None:
            producers = [
                ["git", "-C", str(co.root), "archive", "--format=tar", base],
                ["tar", "-c", "-f", "-", "-C", str(tmp / "stage"), ".git", _MARKER],
            ]
        else:
            producers = [_stream_argv(co, tmp / "names", tmp / "stage")]
        count = names.count(b"\0")
        say(f"copying {count:,} files and {opts.mode} history of {co.root} to {guest_path}")
        _send(channel, producers, staging, guest_path)
    record = WorkspaceRecord(
        host_path=str(co.root),
        guest_path=guest_path,
        base_commit=base,
        tree=host_tree,
        host_head=host_head,
        mode=opts.mode,
        branch=branch,
        include_untracked=opts.include_untracked,
    )
    left = Counter() if opts.include_untracked else git.left_out(co)
    return Prepared(record=record, files=count, left_out=left)


def left_out_line(left: Counter[str]) -> str:
    """ "left out 1,204 untracked files (node_modules/ 1,200, tmp/ 4)", or "" for none."""
    total = sum(left.values())
    if not total:
        return ""
    parts = [f"{name} {count:,}" for name, count in left.most_common(5)]
    if len(left) > 5:
        parts.append(f"{len(left) - 5} more")
    noun = "file" if total == 1 else "files"
    return (
        f"left out {total:,} untracked {noun} ({', '.join(parts)}); --include-untracked copies them"
    )
