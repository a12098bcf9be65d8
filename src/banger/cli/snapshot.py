"""``banger vm snapshot create|list|show|delete`` and ``banger vm fork``."""

from __future__ import annotations

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger vm snapshot create dev  # saved as dev-1; dev runs on",
            "banger vm snapshot create dev before-upgrade",
            "banger vm create --name dev2 --from-snapshot before-upgrade",
            "banger vm snapshot list",
            "banger vm snapshot delete before-upgrade",
        ],
        next_step="`banger vm create --from-snapshot SNAP` restores one as a new VM;"
        " `banger vm fork dev --count 2` does snapshot and restores in one go.",
    ),
)
def snapshot() -> None:
    """Save a running VM as it is (memory, processes, disks) and restore it later.

    A snapshot pauses the VM for as long as its memory takes to write and its
    disks to copy (sparse), then lets it run on. Restoring one makes a new VM
    with the snapshot's processes and files, and its own name, address and
    MAC, in a fraction of a boot.
    """


@snapshot.command(
    "create",
    epilog=epilog(
        [
            "banger vm snapshot create dev",
            "banger vm snapshot create dev clean-checkout --json",
        ],
        next_step="`banger vm create --from-snapshot clean-checkout`.",
    ),
)
@click.argument("name")
@click.argument("snap", required=False)
@common.quiet_option
@common.json_option
def create(name: str, snap: str | None, quiet: bool, as_json: bool) -> None:
    """Snapshot running VM NAME as SNAP (NAME-1 when no SNAP is given)."""
    from banger.api.shapes import Snapshot, SnapshotCreate

    with common.client() as conn:
        op = conn.start("POST", f"/vms/{name}/snapshots", SnapshotCreate(name=snap))
        made = Snapshot.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(made)
        return
    click.echo(f"snapshot {made.name} of {made.vm}: {made.size_bytes >> 20} MiB")


@snapshot.command(
    "list",
    epilog=epilog(["banger vm snapshot list", "banger vm snapshot ls --json"]),
)
@common.json_option
def list_(as_json: bool) -> None:
    """List snapshots with the VM they were taken of, their size and age."""
    from banger.api.shapes import Snapshot
    from banger.cli import render

    now = common.now()
    common.list_records(
        "/snapshots",
        Snapshot.from_json,
        as_json,
        render.SNAPSHOT_HEADERS,
        lambda s: render.snapshot_row(s, now),
        empty="no snapshots: take one with `banger vm snapshot create NAME`",
    )


snapshot.add_alias("ls", "list")


@snapshot.command("show", epilog=epilog(["banger vm snapshot show dev-1"]))
@click.argument("snap")
@common.json_option
def show(snap: str, as_json: bool) -> None:
    """Show everything banger records of snapshot SNAP."""
    from banger.api.shapes import Snapshot
    from banger.cli import render

    common.show_record(f"/snapshots/{snap}", Snapshot.from_json, as_json, render.snapshot_fields)


@snapshot.command(
    "delete",
    epilog=epilog(["banger vm snapshot delete dev-1"], next_step="`banger vm snapshot list`."),
)
@click.argument("snaps", nargs=-1, required=True)
@common.json_option
def delete(snaps: tuple[str, ...], as_json: bool) -> None:
    """Delete snapshots and their files; VMs restored from them keep running."""
    from banger.api.shapes import Snapshot

    deleted = []
    with common.client() as conn:
        for snap in snaps:
            gone = conn.send("DELETE", f"/snapshots/{snap}", None, Snapshot.from_json)
            deleted.append(gone)
            if not as_json:
                click.echo(f"deleted snapshot {gone.name}")
    if as_json:
        common.print_json(deleted)


snapshot.add_alias("rm", "delete")


@click.command(
    epilog=epilog(
        [
            "banger vm fork dev  # one copy: dev-fork-1",
            "banger vm fork dev --count 4  # four copies, each its own VM",
            "banger vm fork dev --name try-a --name try-b",
        ],
        next_step="`banger vm ssh dev-fork-1`; `banger vm list` shows where each came from.",
    )
)
@click.argument("name")
@click.option("-n", "--count", type=int, default=None, help="How many copies (default 1).")
@click.option("--name", "names", multiple=True, help="A name for each copy (repeat it).")
@common.quiet_option
@common.json_option
def fork(name: str, count: int | None, names: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Copy running VM NAME into new VMs, processes and files included.

    NAME is snapshotted (paused meanwhile, then it runs on), the snapshot is
    restored once per copy, and each copy gets its own name, address, MAC and
    clock before it is ready. The snapshot is not kept.
    """
    from banger.api.shapes import VmFork, VmForked

    body = VmFork(count=count or len(names) or 1, names=list(names) or None)
    with common.client() as conn:
        op = conn.start("POST", f"/vms/{name}/fork", body)
        forked = VmForked.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(forked.vms)
        return
    for vm in forked.vms:
        click.echo(f"{vm.name}: {vm.ip}, forked from {name}")
