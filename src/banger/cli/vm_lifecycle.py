"""``banger vm start|stop|restart|kill|pause|resume|set|prune``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from banger.cli import common
from banger.cli.helptext import epilog

if TYPE_CHECKING:
    from banger.api.client import Body


def _each(
    names: tuple[str, ...],
    action: str,
    body: Body | None,
    verb: str,
    *,
    quiet: bool,
    as_json: bool,
) -> None:
    from banger.api.shapes import Vm

    results = []
    with common.client() as conn:
        for name in names:
            op = conn.start("POST", f"/vms/{name}/{action}", body)
            label = name if len(names) > 1 else ""
            done = common.run_operation(conn, op, quiet=quiet, label=label)
            vm = Vm.from_json(done.result or {})
            results.append(vm)
            if not as_json:
                click.echo(f"{verb} {vm.name} ({vm.state})")
    if as_json:
        common.print_json(results)


@click.command(
    epilog=epilog(
        [
            "banger vm start dev",
            "banger vm start dev web -q  # several, no progress lines",
        ],
        next_step="`banger vm ssh dev`.",
    )
)
@click.argument("names", nargs=-1, required=True)
@common.quiet_option
@common.json_option
def start(names: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Boot stopped VMs again, with their disks as they were.

    Waits until each VM answers SSH, printing its stages on stderr.
    """
    _each(names, "start", None, "started", quiet=quiet, as_json=as_json)


@click.command(
    epilog=epilog(
        [
            "banger vm stop dev",
            "banger vm stop --timeout 5 dev web  # kill what is not off after 5 s",
        ],
        next_step="`banger vm start dev` boots it again; `banger vm delete dev` removes it.",
    )
)
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    help="Seconds to wait for the guest to power off before killing it.",
)
@common.quiet_option
@common.json_option
def stop(names: tuple[str, ...], timeout: float, quiet: bool, as_json: bool) -> None:
    """Power VMs off gracefully; their disks stay.

    The guest is asked to power off; after --timeout seconds its VMM is killed.
    """
    from banger.api.shapes import VmStop

    _each(names, "stop", VmStop(timeout=timeout), "stopped", quiet=quiet, as_json=as_json)


@click.command(
    epilog=epilog(
        [
            "banger vm restart dev",
            "banger vm set dev --memory 4096 && banger vm restart dev",
        ]
    )
)
@click.argument("names", nargs=-1, required=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for the graceful stop.")
@common.quiet_option
@common.json_option
def restart(names: tuple[str, ...], timeout: float, quiet: bool, as_json: bool) -> None:
    """Stop and start VMs; this applies changes made with `vm set`."""
    from banger.api.shapes import VmStop

    _each(names, "restart", VmStop(timeout=timeout), "restarted", quiet=quiet, as_json=as_json)


@click.command(
    epilog=epilog(
        [
            "banger vm kill dev  # SIGKILL: gone at once",
            "banger vm kill --signal TERM dev  # let the VMM exit on its own",
        ],
        next_step="`banger vm start dev` boots it again.",
    )
)
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-s", "--signal", "sig", default="KILL", show_default=True, help="Signal for the VMM."
)
@common.quiet_option
@common.json_option
def kill(names: tuple[str, ...], sig: str, quiet: bool, as_json: bool) -> None:
    """Stop VMs at once by signalling their VMM.

    The guest gets no say: writes it has not flushed are lost. Disks stay.
    """
    from banger.api.shapes import VmKill

    _each(names, "kill", VmKill(signal=sig), "killed", quiet=quiet, as_json=as_json)


@click.command(
    epilog=epilog(
        [
            "banger vm pause dev  # its processes freeze; memory and network stay",
            "banger vm resume dev",
        ],
        next_step="`banger vm resume dev`; `banger vm snapshot create dev` saves it as it is.",
    )
)
@click.argument("names", nargs=-1, required=True)
@common.quiet_option
@common.json_option
def pause(names: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Freeze running VMs: their vCPUs stop, their memory and disks stay.

    A paused VM uses no CPU and answers nothing (not even ping) until
    `banger vm resume`; `vm stop`, `vm kill` and `vm delete` work on it.
    """
    _each(names, "pause", None, "paused", quiet=quiet, as_json=as_json)


@click.command(
    epilog=epilog(["banger vm resume dev"], next_step="`banger vm ssh dev`: it is where it was.")
)
@click.argument("names", nargs=-1, required=True)
@common.quiet_option
@common.json_option
def resume(names: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Let paused VMs run again, from exactly where they stopped."""
    _each(names, "resume", None, "resumed", quiet=quiet, as_json=as_json)


@click.command(
    "set",
    epilog=epilog(
        [
            "banger vm set dev --memory 4096 --work-disk-size 20G",
            "banger vm restart dev  # vCPUs, memory and disk size apply now",
            "banger vm set dev --nat  # outside access, at once",
            "banger vm set dev --no-nat",
        ]
    ),
)
@click.argument("name")
# Ranges are checked by the daemon, which knows what its host can give.
@click.option("--vcpus", type=int, help="vCPUs from the next start.")
@click.option("--memory", type=int, help="Memory in MiB from the next start.")
@click.option("--work-disk-size", help="Grow the work disk (never shrinks) at the next start.")
@click.option("--nat/--no-nat", default=None, help="Turn the VM's outside access on or off, now.")
@common.quiet_option
@common.json_option
def set_(
    name: str,
    vcpus: int | None,
    memory: int | None,
    work_disk_size: str | None,
    nat: bool | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Change a VM's vCPUs, memory, work disk or outside access.

    NAT changes at once; the rest applies at the next start
    (`banger vm restart NAME`).
    """
    from banger.api.shapes import VmSet

    if all(v is None for v in (vcpus, memory, work_disk_size, nat)):
        raise click.UsageError(
            "nothing to change: pass --vcpus, --memory, --work-disk-size or --nat"
        )
    body = VmSet(vcpus=vcpus, memory_mib=memory, work_disk_size=work_disk_size, nat=nat)
    with common.client() as conn:
        op = conn.start("PATCH", f"/vms/{name}", body)
        result = common.run_operation(conn, op, quiet=quiet).result or {}
    if as_json:
        common.print_json(result)
        return
    click.echo(f"updated {name}")


@click.command(
    epilog=epilog(
        [
            "banger vm prune  # asks first",
            "banger vm prune --force  # for scripts",
        ]
    )
)
@click.option("-f", "--force", is_flag=True, help="Do not ask; delete every stopped VM.")
@common.quiet_option
@common.json_option
def prune(force: bool, quiet: bool, as_json: bool) -> None:
    """Delete every stopped VM and its disks.

    Asks first on a terminal; without one, --force is required.
    """
    from banger.api.shapes import Vm, VmPrune, VmPruned, VmState

    with common.client() as conn:
        vms = conn.get_list("/vms", Vm.from_json)
        stopped = [v.name for v in vms if v.state in (VmState.STOPPED, VmState.ERROR)]
        if not stopped:
            if as_json:
                common.print_json({"deleted": []})
            else:
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
        result = common.run_operation(conn, op, quiet=quiet).result or {}
    deleted = VmPruned.from_json(result).deleted
    if as_json:
        common.print_json({"deleted": deleted})
        return
    click.echo(f"deleted {len(deleted)} VM(s)" + (f": {', '.join(deleted)}" if deleted else ""))
