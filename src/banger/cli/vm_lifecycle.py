"""``banger vm start|stop|restart|kill|set|prune``."""

from __future__ import annotations

import sys
from typing import Any

import click

from banger.cli import common


def _each(names: tuple[str, ...], action: str, body: dict[str, Any] | None, verb: str) -> None:
    with common.client() as conn:
        for name in names:
            op = conn.post(f"/vms/{name}/{action}", body)
            result = common.run_operation(conn, op, quiet=True).result or {}
            click.echo(f"{verb} {result.get('name', name)} ({result.get('state', '?')})")


@click.command()
@click.argument("names", nargs=-1, required=True)
def start(names: tuple[str, ...]) -> None:
    """Boot stopped VMs again, with their disks as they were.

    Example:  banger vm start dev
    """
    _each(names, "start", None, "started")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    help="Seconds to wait for the guest to power off before killing it.",
)
def stop(names: tuple[str, ...], timeout: float) -> None:
    """Power VMs off gracefully (killed after --timeout). Their disks stay.

    Example:  banger vm stop dev && banger vm start dev
    """
    _each(names, "stop", {"timeout": timeout}, "stopped")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for the graceful stop.")
def restart(names: tuple[str, ...], timeout: float) -> None:
    """Stop and start VMs; applies changes made with `vm set`."""
    _each(names, "restart", {"timeout": timeout}, "restarted")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-s", "--signal", "sig", default="KILL", show_default=True, help="Signal for the VMM."
)
def kill(names: tuple[str, ...], sig: str) -> None:
    """Stop VMs at once by signalling their VMM; the guest gets no say.

    Example:  banger vm kill --signal TERM dev
    """
    _each(names, "kill", {"signal": sig}, "killed")


@click.command("set")
@click.argument("name")
@click.option("--vcpus", type=click.IntRange(1, 64), help="vCPUs from the next start.")
@click.option("--memory", type=click.IntRange(128), help="Memory in MiB from the next start.")
@click.option("--work-disk-size", help="Grow the work disk (never shrinks) at the next start.")
@click.option("--nat/--no-nat", default=None, help="Turn the VM's outside access on or off, now.")
def set_(
    name: str, vcpus: int | None, memory: int | None, work_disk_size: str | None, nat: bool | None
) -> None:
    """Change a VM's resources. NAT changes at once; the rest at the next start.

    Example:  banger vm set dev --memory 4096 --work-disk-size 20G && banger vm restart dev
    """
    body = {"vcpus": vcpus, "memory_mib": memory, "work_disk_size": work_disk_size, "nat": nat}
    if all(v is None for v in body.values()):
        raise click.UsageError(
            "nothing to change: pass --vcpus, --memory, --work-disk-size or --nat"
        )
    with common.client() as conn:
        op = conn.request("PATCH", f"/vms/{name}", json_body=body)
        common.run_operation(conn, op)
    click.echo(f"updated {name}")


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask; delete every stopped VM.")
def prune(force: bool) -> None:
    """Delete every stopped VM and its disks. Asks first unless --force."""
    with common.client() as conn:
        stopped = [v["name"] for v in conn.get("/vms") if v["state"] in ("stopped", "error")]
        if not stopped:
            click.echo("no stopped VMs")
            return
        if not force:
            if not sys.stdin.isatty():
                raise click.UsageError(
                    f"would delete {len(stopped)} VM(s): {', '.join(stopped)};"
                    " pass --force to confirm without a terminal"
                )
            click.confirm(f"Delete {len(stopped)} stopped VM(s): {', '.join(stopped)}?", abort=True)
        op = conn.post("/vms/prune", {"names": stopped})
        result = common.run_operation(conn, op, quiet=True).result or {}
    deleted = result.get("deleted", [])
    click.echo(f"deleted {len(deleted)} VM(s)" + (f": {', '.join(deleted)}" if deleted else ""))


COMMANDS = (start, stop, restart, kill, set_, prune)
