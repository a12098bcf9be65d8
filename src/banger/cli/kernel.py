"""``banger kernel``: pull, import, list, show and delete the kernels VMs boot."""

from __future__ import annotations

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger kernel catalog  # the kernels banger knows by name",
            "banger kernel pull debian-bookworm-cloud",
            "banger kernel list",
        ],
        next_step="`banger image pull REF --kernel-ref NAME` boots an image with it.",
    ),
)
def kernel() -> None:
    """Manage guest kernels and the initramfs banger builds for each.

    You rarely need this: `image pull` fetches the default kernel itself.
    `banger kernel pull NAME` prepares a host in advance; `kernel import`
    brings a kernel you built.
    """


@kernel.command(
    "pull",
    epilog=epilog(["banger kernel pull debian-bookworm-cloud"], next_step="`banger kernel list`."),
)
@click.argument("name")
@common.quiet_option
@common.json_option
def kernel_pull(name: str, quiet: bool, as_json: bool) -> None:
    """Fetch kernel NAME from banger's catalog and build its initramfs."""
    from banger.api.shapes import Kernel, KernelPull

    with common.client() as conn:
        op = conn.start("POST", "/kernels/pull", KernelPull(name=name))
        pulled = Kernel.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(pulled)
        return
    click.echo(f"kernel {name} {pulled.version} ready")


@kernel.command(
    "import",
    epilog=epilog(
        [
            "banger kernel import mine ./kernel-dir  # vmlinuz* and lib/modules/VERSION",
            "banger kernel import mine --kernel ./bzImage --modules ./lib/modules",
        ],
        next_step="`banger image pull REF --kernel-ref mine`.",
    ),
)
@click.argument("name")
@click.argument("directory", required=False)
@click.option("--kernel", "kernel_file", help="The kernel image file (instead of DIRECTORY).")
@click.option("--initrd", help="Its initramfs (must follow banger's boot contract).")
@click.option("--modules", help="Its lib/modules directory (banger builds the initramfs).")
@common.quiet_option
@common.json_option
def kernel_import(
    name: str,
    directory: str | None,
    kernel_file: str | None,
    initrd: str | None,
    modules: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Import a kernel you built or downloaded, as NAME.

    DIRECTORY holds vmlinuz* (or bzImage, vmlinux*) and lib/modules/VERSION
    or an initrd. Or name the pieces with --kernel, --initrd, --modules.
    """
    from banger.api.shapes import Kernel, KernelImport

    body = KernelImport(
        name=name,
        dir=common.absolute(directory),
        kernel=common.absolute(kernel_file),
        initrd=common.absolute(initrd),
        modules=common.absolute(modules),
    )
    with common.client() as conn:
        op = conn.start("POST", "/kernels/import", body)
        imported = Kernel.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(imported)
        return
    click.echo(f"kernel {name} {imported.version} ready")


@kernel.command("delete", epilog=epilog(["banger kernel delete mine", "banger kernel rm old new"]))
@click.argument("names", nargs=-1, required=True)
@common.json_option
def kernel_delete(names: tuple[str, ...], as_json: bool) -> None:
    """Delete kernels; refused while an image refers to one."""
    from banger.api.shapes import Kernel

    deleted = []
    with common.client() as conn:
        for name in names:
            deleted.append(conn.send("DELETE", f"/kernels/{name}", None, Kernel.from_json))
            if not as_json:
                click.echo(f"deleted kernel {name}")
    if as_json:
        common.print_json(deleted)


kernel.add_alias("rm", "delete")


@kernel.command("catalog", epilog=epilog(["banger kernel catalog", "banger kernel catalog --json"]))
@common.json_option
def kernel_catalog(as_json: bool) -> None:
    """List the kernels `kernel pull` knows by name."""
    common.print_catalog("/kernels/catalog", as_json)


@kernel.command("list", epilog=epilog(["banger kernel list", "banger kernel ls --json"]))
@common.json_option
def kernel_list(as_json: bool) -> None:
    """List the kernels banger has, pulled or imported."""
    from banger.api.shapes import Kernel
    from banger.cli import render

    now = common.now()
    common.list_records(
        "/kernels",
        Kernel.from_json,
        as_json,
        render.KERNEL_HEADERS,
        lambda k: render.kernel_row(k, now),
        empty="no kernels yet: pull one with `banger kernel pull debian-bookworm-cloud`",
    )


kernel.add_alias("ls", "list")


@kernel.command(
    "show",
    epilog=epilog(
        [
            "banger kernel show debian-bookworm-cloud",
            "banger kernel show debian-bookworm-cloud --json",
        ]
    ),
)
@click.argument("name")
@common.json_option
def kernel_show(name: str, as_json: bool) -> None:
    """Show everything banger knows about kernel NAME."""
    from banger.api.shapes import Kernel
    from banger.cli import render

    common.show_record(f"/kernels/{name}", Kernel.from_json, as_json, render.kernel_fields)
