"""``banger vm workspace prepare|export``, ``banger vm exec`` and ``banger vm cp``.

The CLI streams these itself, in one pass from the host's disk: through the
daemon to banger's guest agent when the VM has one (``AgentChannel``), over
the VM's SSH with the target the daemon hands out otherwise (as `banger vm
ssh` does); the daemon records what was prepared (GET/PUT /vms/NAME/workspace).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.shapes import Workspace
    from banger.workspace.export import Exported
    from banger.workspace.prepare import Prepared, PrepareOptions


def prepare_into(
    conn: Client, name: str, opts: PrepareOptions, *, quiet: bool = False
) -> tuple[Workspace, Prepared]:
    """Copy the checkout into VM ``name`` and record it in the daemon; progress on stderr."""
    from banger.workspace import access

    def say(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    return access.prepare_into(conn, name, opts, say)


def prepared_lines(name: str, ws: Workspace, done: Prepared) -> list[str]:
    from banger.workspace.prepare import left_out_line

    at = f"branch {ws.branch} at" if ws.branch else "detached at"
    lines = [
        f"prepared {ws.guest_path} in {name}: {done.files:,} files from {ws.host_path},"
        f" {at} {ws.base_commit[:12]} ({ws.mode} history)"
    ]
    left = left_out_line(done.left_out)
    return [*lines, left] if left else lines


def write_patch(exported: Exported, out: str) -> None:
    """``out`` gets the patch whole or not at all; a device or pipe is written, never replaced."""
    if out == "-":
        sys.stdout.buffer.write(exported.patch)
        sys.stdout.flush()
        return
    target = Path(out)
    if target.exists() and not target.is_file():
        with target.open("wb") as sink:
            sink.write(exported.patch)
        return
    tmp = f"{out}.banger-tmp"
    Path(tmp).write_bytes(exported.patch)
    os.replace(tmp, out)


def change_lines(exported: Exported) -> list[str]:
    return [
        f"{c.status} {c.old} -> {c.path}" if c.old else f"{c.status} {c.path}"
        for c in exported.changes
    ]


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger vm workspace prepare dev .  # into /root/<repo>",
            "banger vm exec dev -- make test  # run in it",
            "banger vm workspace export dev -o p.diff  # git apply p.diff",
        ],
        next_step="`banger vm run --workspace . --export out.patch -- CMD` does all three in a"
        " fresh VM.",
    ),
)
def workspace() -> None:
    """Copy a git checkout into a VM and bring its changes back as a patch.

    `prepare` copies the working tree as it is (uncommitted edits included,
    untracked files when asked, ignored files never) with the git history
    diffs need, and records the base commit. `export` returns everything
    changed in the guest since then, committed there or not, as one patch
    that `git apply` takes on the host.
    """


@workspace.command(
    epilog=epilog(
        [
            "banger vm workspace prepare dev  # the checkout here",
            "banger vm workspace prepare dev ~/src/app --guest-path /root/app",
            "banger vm workspace prepare dev . --include-untracked --mode full",
            "banger vm workspace prepare dev . --from v1.2 --branch fix",
        ],
        next_step="`banger vm exec dev -- CMD` runs in it; `banger vm workspace export dev`.",
    )
)
@click.argument("name")
@click.argument("path", default=".", type=click.Path(path_type=Path))
@click.option("--guest-path", help="Where in the guest (default: /root/<repository name>).")
@click.option("--branch", help="Branch to check out in the guest (default: the host's current).")
@click.option(
    "--from", "from_rev", metavar="REV", help="Copy commit REV's tree instead of the working tree."
)
@click.option(
    "--mode",
    type=click.Choice(["shallow", "full"]),
    default="shallow",
    show_default=True,
    help="History to copy: the base commit only, or all its ancestors.",
)
@click.option(
    "--include-untracked", is_flag=True, help="Copy untracked files too (never ignored ones)."
)
@common.json_option
def prepare(name: str, path: Path, as_json: bool, **kw: Any) -> None:
    """Copy the git checkout at PATH into VM NAME, replacing any earlier copy there.

    One tar stream over one SSH connection; it lands beside the target and
    is renamed over it when complete, so a failure leaves the old copy.
    """
    from banger.api.shapes import WorkspaceMode
    from banger.workspace.prepare import PrepareOptions

    opts = PrepareOptions(path=path, mode=WorkspaceMode(kw.pop("mode")), **kw)
    with common.client() as conn:
        ws, done = prepare_into(conn, name, opts)
    if as_json:
        data = ws.to_json()
        data.update(files=done.files, left_out=dict(done.left_out))
        common.print_json(data)
        return
    for line in prepared_lines(name, ws, done):
        click.echo(line)


@workspace.command(
    epilog=epilog(
        [
            "banger vm workspace export dev -o p.diff  # git apply p.diff",
            "banger vm workspace export dev > p.diff  # on stdout",
            "banger vm workspace export dev --json  # for programs",
            "banger vm workspace export dev --base-commit HEAD~3",
        ]
    )
)
@click.argument("name")
@click.option(
    "-o", "--output", "out", metavar="FILE", help="Write the patch to FILE (default: stdout)."
)
@click.option(
    "--base-commit", metavar="REV", help="Diff against REV (default: prepare's base commit)."
)
@common.json_option
def export(name: str, out: str | None, base_commit: str | None, as_json: bool) -> None:
    """Print every change in VM NAME's workspace since its base commit as one patch.

    Edits, new files, deletions, renames, binary files, mode changes and
    symlinks, committed in the guest or not. With -o, the changed files go
    to stdout; otherwise the patch does and they go to stderr. No change is
    an empty patch and exit code 0.
    """
    from banger.workspace.access import export_from

    with common.client() as conn:
        exported = export_from(conn, name, base_commit)
    if as_json:
        common.print_json(
            {
                "base_commit": exported.base_commit,
                "changed_files": [c.path for c in exported.changes],
                "changes": [
                    {"status": c.status, "path": c.path, "old_path": c.old}
                    for c in exported.changes
                ],
                "patch": exported.patch.decode(errors="replace"),
            }
        )
        return
    write_patch(exported, out or "-")
    for line in change_lines(exported) or ["no changes"]:
        click.echo(line, err=out is None)
    if out:
        click.echo(f"wrote {len(exported.patch):,} bytes to {out}", err=True)
