"""``banger vm``: create, run, list, show, ssh into and delete VMs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from banger.cli import common


@click.group(
    epilog="""\b
Examples:
  banger vm run -- make test           # fresh VM, run a command, exit code comes back
  banger vm create --name dev          # a VM that stays
  banger vm ssh dev                    # a shell in it (or: banger vm ssh dev -- uptime)
  banger vm list
  banger vm delete dev
"""
)
def vm() -> None:
    """Create, use and delete microVMs.

    `vm run` is the one-shot path: boot, run, throw away. `vm create`
    makes a VM that stays until `vm delete`.
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
        click.option(
            "--vmm",
            type=click.Choice(["auto", "firecracker", "qemu"]),
            help="VMM that runs the VM (default: auto, Firecracker where it and KVM work;"
            " `banger doctor` says which).",
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
        "vmm": kw.get("vmm"),
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


@vm.command()
@create_options
@click.option("--no-start", is_flag=True, help="Create the VM and its disks without booting it.")
def create(**kw: Any) -> None:
    """Create and boot a VM that stays until `banger vm delete`.

    Prints one line with the VM's spec when it answers SSH.
    """
    with common.client() as conn:
        data = _create(conn, _create_body(**kw), quiet=False)
    click.echo(_spec_line(data))


@vm.command(context_settings={"ignore_unknown_options": True})
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


@vm.command("list")
@common.json_option
def list_(as_json: bool) -> None:
    """List VMs with their state and address."""
    common.list_records(
        "/vms",
        as_json,
        ["NAME", "STATE", "IP", "IMAGE", "VCPUS", "MEMORY", "CREATED"],
        lambda v: (
            v["name"],
            v["state"],
            v["ip"],
            v["image"],
            v["vcpus"],
            f"{v['memory_mib']} MiB",
            v["created_at"],
        ),
        empty="no VMs: create one with `banger vm create` or `banger vm run`",
    )


vm.add_command(list_, "ls")


@vm.command()
@click.argument("name")
@common.json_option
def show(name: str, as_json: bool) -> None:
    """Show one VM."""
    common.show_record(f"/vms/{name}", as_json)


@vm.command()
@click.argument("names", nargs=-1, required=True)
def delete(names: tuple[str, ...]) -> None:
    """Stop VMs and remove their disks. Irreversible."""
    with common.client() as conn:
        for name in names:
            common.run_operation(conn, conn.delete(f"/vms/{name}"), quiet=True)
            click.echo(f"deleted {name}")


vm.add_command(delete, "rm")


@vm.command(context_settings={"ignore_unknown_options": True})
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
