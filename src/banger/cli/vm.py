"""``banger vm``: create, run, list, show, ssh into and delete VMs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger vm run -- make test  # a fresh VM runs it; its exit code comes back",
            "banger vm create --name dev  # a VM that stays",
            "banger vm ssh dev  # a shell in it",
            "banger vm ssh dev -- uptime  # or one command",
            "banger vm list",
            "banger vm delete dev",
        ],
        next_step="`banger vm COMMAND --help` for each command; `banger image pull` for"
        " more images to boot.",
    ),
)
def vm() -> None:
    """Create, use and delete microVMs.

    A VM boots from an image (see `banger image list`) with its own
    copy-on-write disk, an address on banger's bridge and SSH with pinned
    keys. `vm run` is the one-shot path: boot, run, throw away. `vm create`
    makes a VM that stays until `vm delete`; `vm ssh` gets into it.
    """


def create_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", help="VM name, also its DNS name NAME.vm (default: generated)."),
        click.option("--image", help="Image to boot (default: debian-bookworm)."),
        click.option(
            "--vcpus",
            type=click.IntRange(1, 64),
            help="vCPUs (default: half the host's cores, at most 4).",
        ),
        click.option(
            "--memory",
            type=click.IntRange(128),
            help="Memory in MiB (default: an eighth of the host's, 256-2048).",
        ),
        click.option(
            "--system-overlay-size",
            help="Size of the VM's copy-on-write layer over the image (default 4G).",
        ),
        click.option(
            "--work-disk-size", help="Size of the disk mounted at /root in the VM (default 8G)."
        ),
        click.option(
            "--nat", is_flag=True, help="Let the VM reach the outside (masqueraded by the host)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _create_body(**kw: Any) -> dict[str, Any]:
    return {
        "name": kw.get("name"),
        "image": kw.get("image"),
        "vcpus": kw.get("vcpus"),
        "memory_mib": kw.get("memory"),
        "system_overlay_size": kw.get("system_overlay_size"),
        "work_disk_size": kw.get("work_disk_size"),
        "nat": kw.get("nat", False),
        "no_start": kw.get("no_start", False),
    }


def _spec_line(data: dict[str, Any]) -> str:
    from banger.units import format_size

    return (
        f"{data['name']}: image {data['image']}, {data['vcpus']} vCPU, {data['memory_mib']} MiB,"
        f" overlay {format_size(data['overlay_bytes'])},"
        f" work disk {format_size(data['work_disk_bytes'])}, IP {data['ip']}"
        f"{', NAT' if data['nat'] else ''}, {data['vmm']}, {data['state']}"
    )


def _create(conn: Any, body: dict[str, Any], quiet: bool) -> dict[str, Any]:
    op = conn.post("/vms", body)
    result: dict[str, Any] = common.run_operation(conn, op, quiet=quiet).result or {}
    return result


@vm.command(
    epilog=epilog(
        [
            "banger vm create --name dev  # defaults sized to this host",
            "banger vm create --name big --vcpus 2 --memory 4096 --work-disk-size 20G",
            "banger vm create --name web --nat  # allowed out to the network",
            "banger vm create --name later --no-start  # disks only, for `vm start`",
        ],
        next_step="`banger vm ssh dev` for a shell, `banger vm stop dev`, `banger vm delete dev`.",
    )
)
@create_options
@click.option("--no-start", is_flag=True, help="Create the VM and its disks without booting it.")
@common.quiet_option
@common.json_option
def create(quiet: bool, as_json: bool, **kw: Any) -> None:
    """Create and boot a VM that stays until `banger vm delete`.

    Stages go to stderr as they happen; when the VM answers SSH, one line
    with its spec (image, vCPUs, memory, disks, IP) goes to stdout.
    """
    with common.client() as conn:
        data = _create(conn, _create_body(**kw), quiet=quiet)
    if as_json:
        common.print_json(data)
        return
    click.echo(_spec_line(data))


@vm.command(
    context_settings={"ignore_unknown_options": True},
    epilog=epilog(
        [
            "banger vm run -- uname -a  # boot, run, delete; exit code back",
            "banger vm run  # a shell in a throwaway VM",
            "banger vm run --keep --name try -- true  # then `banger vm ssh try`",
            "banger vm run -q --memory 1024 -- sh -c 'nproc; free -m'",
        ]
    ),
)
@create_options
@click.option("--keep", is_flag=True, help="Keep the VM afterwards instead of deleting it.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines; only the command's output.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(command: tuple[str, ...], keep: bool, quiet: bool, **kw: Any) -> None:
    """Create a VM, run COMMAND in it over SSH, then delete it.

    Without COMMAND you get an interactive shell. The command's output and
    exit code are passed through. Put `--` before the command so its flags
    stay its own:  banger vm run -- ls -la /
    """
    from banger import proc
    from banger.api.models import SshTarget
    from banger.guest.ssh import ssh_argv

    with common.client() as conn:
        data = _create(conn, _create_body(**kw), quiet=quiet)
        name = data["name"]
        code = 255
        try:
            target = SshTarget.model_validate(conn.get(f"/vms/{name}/ssh"))
            code = proc.interactive(ssh_argv(target, command, tty=None if command else True))
        finally:
            if keep:
                if not quiet:
                    click.echo(
                        f"kept {name}: `banger vm ssh {name}`, `banger vm delete {name}`", err=True
                    )
            else:
                common.run_operation(conn, conn.delete(f"/vms/{name}"), quiet=True)
    raise SystemExit(code)


@vm.command(
    "list",
    epilog=epilog(
        [
            "banger vm list",
            "banger vm ls --json  # every field, for programs",
        ],
        next_step="`banger vm show NAME` for one VM in full.",
    ),
)
@common.json_option
def list_(as_json: bool) -> None:
    """List VMs with their state, address, size and age."""
    from banger.cli import render

    now = common.now()
    common.list_records(
        "/vms",
        as_json,
        render.VM_HEADERS,
        lambda v: render.vm_row(v, now),
        empty="no VMs: create one with `banger vm create` or `banger vm run`",
    )


vm.add_alias("ls", "list")


@vm.command(
    epilog=epilog(
        [
            "banger vm show dev",
            "banger vm show dev --json  # sizes in bytes, times in ISO 8601",
        ]
    )
)
@click.argument("name")
@common.json_option
def show(name: str, as_json: bool) -> None:
    """Show everything banger knows about VM NAME."""
    from banger.cli import render

    common.show_record(f"/vms/{name}", as_json, render.vm_fields)


@vm.command(
    epilog=epilog(
        [
            "banger vm delete dev",
            "banger vm rm dev web -q  # several at once, no progress lines",
        ],
        next_step="`banger vm prune` deletes every stopped VM.",
    )
)
@click.argument("names", nargs=-1, required=True)
@common.quiet_option
@common.json_option
def delete(names: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Stop VMs and remove their disks. Irreversible.

    A running VM is killed first (it gets no shutdown); use `banger vm stop`
    before if its guest should power off cleanly.
    """
    deleted = []
    with common.client() as conn:
        for name in names:
            label = name if len(names) > 1 else ""
            op = common.run_operation(conn, conn.delete(f"/vms/{name}"), quiet=quiet, label=label)
            deleted.append(op.result or {"name": name})
            if not as_json:
                click.echo(f"deleted {name}")
    if as_json:
        common.print_json(deleted)


vm.add_alias("rm", "delete")


@vm.command(
    context_settings={"ignore_unknown_options": True},
    epilog=epilog(
        [
            "banger vm ssh dev  # an interactive shell",
            "banger vm ssh dev -- systemctl status",
        ]
    ),
)
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, command: tuple[str, ...]) -> None:
    """Open a shell in VM NAME with OpenSSH, or run COMMAND there.

    The host key is pinned by banger: no prompt, no known_hosts noise.
    Example:  banger vm ssh dev -- systemctl status
    """
    from banger import proc
    from banger.api.models import SshTarget
    from banger.guest.ssh import ssh_argv

    with common.client() as conn:
        target = SshTarget.model_validate(conn.get(f"/vms/{name}/ssh"))
    proc.replace_process(ssh_argv(target, command))
