"""``banger vm start|stop|restart|kill|set|prune``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from banger.cli import common

if TYPE_CHECKING:
    from banger.api.client import Body


def _each(names: tuple[str, ...], action: str, body: Body | None, verb: str) -> None:
    from banger.api.shapes import Vm

    with common.client() as conn:
        for name in names:
            op = conn.start("POST", f"/vms/{name}/{action}", body)
            vm = Vm.from_json(common.run_operation(conn, op, quiet=True).result or {})
            click.echo(f"{verb} {vm.name} ({vm.state})")


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
    from banger.api.shapes import VmStop

    _each(names, "stop", VmStop(timeout=timeout), "stopped")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for the graceful stop.")
def restart(names: tuple[str, ...], timeout: float) -> None:
    """Stop and start VMs; applies changes made with `vm set`."""
    from banger.api.shapes import VmStop

    _each(names, "restart", VmStop(timeout=timeout), "restarted")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-s", "--signal", "sig", default="KILL", show_default=True, help="Signal for the VMM."
)
def kill(names: tuple[str, ...], sig: str) -> None:
    """Stop VMs at once by signalling their VMM; the guest gets no say.

    Example:  banger vm kill --signal TERM dev
    """
    from banger.api.shapes import VmKill

    _each(names, "kill", VmKill(signal=sig), "killed")


@click.command("set")
@click.argument("name")
# Ranges are checked by the daemon, which knows what its host can give.
@click.option("--vcpus", type=int, help="vCPUs from the next start.")
@click.option("--memory", type=int, help="Memory in MiB from the next start.")
@click.option("--work-disk-size", help="Grow the work disk (never shrinks) at the next start.")
@click.option("--nat/--no-nat", default=None, help="Turn the VM's outside access on or off, now.")
def set_(
    name: str, vcpus: int | None, memory: int | None, work_disk_size: str | None, nat: bool | None
) -> None:
    """Change a VM's resources. NAT changes at once; the rest at the next start.

    Example:  banger vm set dev --memory 4096 --work-disk-size 20G && banger vm restart dev
    """
    from banger.api.shapes import VmSet

    if all(v is None for v in (vcpus, memory, work_disk_size, nat)):
        raise click.UsageError(
            "nothing to change: pass --vcpus, --memory, --work-disk-size or --nat"
        )
    body = VmSet(vcpus=vcpus, memory_mib=memory, work_disk_size=work_disk_size, nat=nat)
    with common.client() as conn:
        common.run_operation(conn, conn.start("PATCH", f"/vms/{name}", body))
    click.echo(f"updated {name}")


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask; delete every stopped VM.")
def prune(force: bool) -> None:
    """Delete every stopped VM and its disks. Asks first unless --force."""
    from banger.api.shapes import Vm, VmPrune, VmPruned, VmState

    with common.client() as conn:
        vms = conn.get_list("/vms", Vm.from_json)
        stopped = [v.name for v in vms if v.state in (VmState.STOPPED, VmState.ERROR)]
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
        op = conn.start("POST", "/vms/prune", VmPrune(names=stopped))
        result = common.run_operation(conn, op, quiet=True).result or {}
    deleted = VmPruned.from_json(result).deleted
    click.echo(f"deleted {len(deleted)} VM(s)" + (f": {', '.join(deleted)}" if deleted else ""))


COMMANDS = (start, stop, restart, kill, set_, prune)
