"""``banger image``: pull, register, promote, list, show and delete images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog

if TYPE_CHECKING:
    from banger.api.client import Client


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger image pull debian-bookworm  # Debian 12, via apt",
            "banger image pull docker.io/library/alpine:3.20  # any OCI image",
            "banger image list",
            "banger image show debian-bookworm",
        ],
        next_step="`banger vm run --image debian-bookworm -- uname -a` boots one.",
    ),
)
def image() -> None:
    """Manage images: the root filesystems VMs boot from.

    `banger image pull NAME` builds a catalog image (`banger image catalog`)
    or pulls any OCI image from a registry and makes it bootable. An image is
    shared read-only by every VM made from it; each VM writes to its own
    copy-on-write overlay, so creating a VM never copies it.
    """


@image.command(
    "pull",
    epilog=epilog(
        [
            "banger image pull debian-bookworm  # from your apt mirror",
            "banger image pull docker.io/library/debian:bookworm  # a registry",
            "banger image pull 127.0.0.1:5000/team/dev:latest --name dev",
        ],
        next_step="`banger vm create --image NAME`.",
    ),
)
@click.argument("ref")
@click.option("--name", help="Name for the image (default: from the reference, e.g. debian-12).")
@click.option("--kernel-ref", help="A kernel banger has (`kernel list`) to boot it with.")
@click.option("--kernel", "kernel_file", help="Boot it with this kernel image file instead.")
@click.option("--initrd", help="With --kernel: its initramfs (must follow banger's boot contract).")
@click.option(
    "--modules", help="With --kernel: its lib/modules directory (banger builds the initramfs)."
)
@click.option("--size", help="Size of the image's disk (default: its files plus 25%, at least 1G).")
@common.quiet_option
@common.json_option
def image_pull(
    ref: str,
    name: str | None,
    kernel_ref: str | None,
    kernel_file: str | None,
    initrd: str | None,
    modules: str | None,
    size: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Make image REF bootable: a catalog name or an OCI reference.

    Catalog names (`banger image catalog`) are built or fetched as banger
    knows them; any other REF is pulled from its registry. Registry images
    get banger's guest agent, so they boot, get their network and accept SSH
    even without an init system or an SSH server.
    """
    if kernel_file and kernel_ref:
        raise click.UsageError("pass --kernel-ref or --kernel, not both")
    if (initrd or modules) and not kernel_file:
        raise click.UsageError("--initrd and --modules go with --kernel")
    from banger.api.shapes import Image, ImagePull

    with common.client() as conn:
        if kernel_file:
            kernel_ref = _import_for_image(conn, name or ref, kernel_file, initrd, modules, quiet)
        body = ImagePull(ref=ref, name=name, kernel=kernel_ref, size=size)
        op = conn.start("POST", "/images/pull", body)
        pulled = Image.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(pulled)
        return
    click.echo(f"image {pulled.name} ready ({pulled.rootfs})")


def _import_for_image(
    conn: Client, image: str, kernel: str, initrd: str | None, modules: str | None, quiet: bool
) -> str:
    import re

    from banger.api.shapes import KernelImport

    name = re.sub(r"[^a-z0-9._-]", "-", image.lower()).strip("-.")[:56] + "-kernel"
    body = KernelImport(
        name=name,
        kernel=common.absolute(kernel),
        initrd=common.absolute(initrd),
        modules=common.absolute(modules),
    )
    common.run_operation(conn, conn.start("POST", "/kernels/import", body), quiet=quiet)
    return name


@image.command(
    "register",
    epilog=epilog(
        [
            "banger image register mine ./rootfs.ext4",
            "banger image register tiny ./tiny.ext4 --init /bin/sh",
        ],
        next_step="`banger vm run --image mine -- uname -a`.",
    ),
)
@click.argument("name")
@click.argument("rootfs")
@click.option("--kernel-ref", help="Kernel to boot it with (default: the default kernel).")
@click.option("--init", help="Init to run instead of the image's /sbin/init.")
@common.json_option
def image_register(
    name: str, rootfs: str, kernel_ref: str | None, init: str | None, as_json: bool
) -> None:
    """Register an ext4 root filesystem ROOTFS as image NAME.

    The file is used in place, not copied: keep it where it is while the
    image exists.
    """
    from banger.api.shapes import Image, ImageRegister

    body = ImageRegister(
        name=name, rootfs=common.absolute(rootfs) or rootfs, kernel=kernel_ref, init=init
    )
    with common.client() as conn:
        registered = conn.send("POST", "/images/register", body, Image.from_json)
    if as_json:
        common.print_json(registered)
        return
    click.echo(f"registered image {registered.name} ({registered.rootfs})")


@image.command(
    "promote",
    epilog=epilog(
        [
            "banger vm create --name base --nat",
            "banger vm ssh base -- apt-get install -y make",
            "banger image promote base dev-base",
            "banger vm run --image dev-base -- make --version",
        ]
    ),
)
@click.argument("vm")
@click.argument("name")
@click.option("--size", help="Size of the image's disk (default: its files plus 25%, at least 1G).")
@common.quiet_option
@common.json_option
def image_promote(vm: str, name: str, size: str | None, quiet: bool, as_json: bool) -> None:
    """Make image NAME from running VM VM's filesystem as it is now.

    Set a VM up once (packages, tools, your dotfiles in /root), promote it, and
    every VM made from NAME starts that way. The VM keeps running.
    """
    from banger.api.shapes import Image, ImagePromote

    with common.client() as conn:
        op = conn.start("POST", "/images/promote", ImagePromote(vm=vm, name=name, size=size))
        promoted = Image.from_json(common.run_operation(conn, op, quiet=quiet).result or {})
    if as_json:
        common.print_json(promoted)
        return
    click.echo(f"image {promoted.name} ready ({promoted.rootfs})")


@image.command(
    "delete",
    epilog=epilog(["banger image delete dev-base", "banger image rm old-1 old-2"]),
)
@click.argument("names", nargs=-1, required=True)
@common.json_option
def image_delete(names: tuple[str, ...], as_json: bool) -> None:
    """Delete images and their disks; refused while a VM uses one."""
    from banger.api.shapes import Image

    deleted = []
    with common.client() as conn:
        for name in names:
            deleted.append(conn.send("DELETE", f"/images/{name}", None, Image.from_json))
            if not as_json:
                click.echo(f"deleted image {name}")
    if as_json:
        common.print_json(deleted)


image.add_alias("rm", "delete")


@image.group(
    "cache",
    cls=Group,
    epilog=epilog(
        [
            "banger image cache prune --dry-run  # how much would be freed",
            "banger image cache prune",
        ],
        next_step="`banger image pull REF` fills it again.",
    ),
)
def image_cache() -> None:
    """Manage the cache of downloaded registry blobs.

    `image pull` keeps the layers it downloads, so pulling a related image
    again is quick. `banger image cache prune` frees that space; images
    already pulled keep working.
    """


@image_cache.command(
    "prune",
    epilog=epilog(["banger image cache prune --dry-run", "banger image cache prune --json"]),
)
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@common.json_option
def image_cache_prune(dry_run: bool, as_json: bool) -> None:
    """Delete every cached blob; images already pulled are not affected."""
    from banger.api.shapes import CachePrune

    path = f"/images/cache/prune?dry_run={'true' if dry_run else 'false'}"
    with common.client() as conn:
        pruned = conn.send("POST", path, None, CachePrune.from_json)
    if as_json:
        common.print_json(pruned)
        return
    click.echo(pruned.message)


@image.command(
    "catalog",
    epilog=epilog(["banger image catalog", "banger image catalog --json"]),
)
@common.json_option
def image_catalog(as_json: bool) -> None:
    """List the images `image pull` knows by name."""
    common.print_catalog("/images/catalog", as_json)


@image.command(
    "list",
    epilog=epilog(["banger image list", "banger image ls --json"]),
)
@common.json_option
def image_list(as_json: bool) -> None:
    """List the images VMs can boot from."""
    from banger.api.shapes import Image
    from banger.cli import render

    now = common.now()
    common.list_records(
        "/images",
        Image.from_json,
        as_json,
        render.IMAGE_HEADERS,
        lambda i: render.image_row(i, now),
        empty="no images yet: pull one with `banger image pull debian-bookworm`",
    )


image.add_alias("ls", "list")


@image.command(
    "show",
    epilog=epilog(
        ["banger image show debian-bookworm", "banger image show debian-bookworm --json"]
    ),
)
@click.argument("name")
@common.json_option
def image_show(name: str, as_json: bool) -> None:
    """Show everything banger knows about image NAME."""
    from banger.api.shapes import Image
    from banger.cli import render

    common.show_record(f"/images/{name}", Image.from_json, as_json, render.image_fields)
