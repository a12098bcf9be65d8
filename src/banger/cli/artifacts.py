"""``banger image`` and ``banger kernel``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from banger.cli import common

if TYPE_CHECKING:
    from banger.api.client import Client


@click.group(
    epilog="""\b
Examples:
  banger image pull debian-bookworm     # Debian 12 with SSH, built from your apt mirror
  banger image list
  banger image show debian-bookworm --json
Next: `banger vm run --image debian-bookworm -- uname -a`
"""
)
def image() -> None:
    """Manage images: the root filesystems VMs boot from.

    An image is shared read-only by every VM made from it; each VM writes
    to its own copy-on-write overlay, so creating a VM never copies it.
    """


def _abs(path: str | None) -> str | None:
    from pathlib import Path

    return str(Path(path).resolve()) if path else None


@image.command("pull")
@click.argument("ref")
@click.option("--name", help="Name for the image (default: from the reference, e.g. debian-12).")
@click.option("--kernel-ref", help="A kernel banger has (`kernel list`) to boot it with.")
@click.option("--kernel", "kernel_file", help="Boot it with this kernel image file instead.")
@click.option("--initrd", help="With --kernel: its initramfs (must follow banger's boot contract).")
@click.option(
    "--modules", help="With --kernel: its lib/modules directory (banger builds the initramfs)."
)
@click.option("--size", help="Size of the image's disk (default: its files plus 25%, at least 1G).")
def image_pull(
    ref: str,
    name: str | None,
    kernel_ref: str | None,
    kernel_file: str | None,
    initrd: str | None,
    modules: str | None,
    size: str | None,
) -> None:
    """Make image REF bootable: a catalog name, or any OCI image reference.

    \b
    Examples:
      banger image pull debian-bookworm                     # built from your apt mirror
      banger image pull docker.io/library/debian:bookworm   # from a registry
      banger image pull 127.0.0.1:5000/team/dev:latest --name dev

    Registry images get banger's guest agent, so they boot, get their
    network and accept SSH even without an init system or an SSH server.
    """
    if kernel_file and kernel_ref:
        raise click.UsageError("pass --kernel-ref or --kernel, not both")
    if (initrd or modules) and not kernel_file:
        raise click.UsageError("--initrd and --modules go with --kernel")
    from banger.api.shapes import Image, ImagePull

    with common.client() as conn:
        if kernel_file:
            kernel_ref = _import_for_image(conn, name or ref, kernel_file, initrd, modules)
        body = ImagePull(ref=ref, name=name, kernel=kernel_ref, size=size)
        op = conn.start("POST", "/images/pull", body)
        pulled = Image.from_json(common.run_operation(conn, op).result or {})
    click.echo(f"image {pulled.name} ready ({pulled.rootfs})")


def _import_for_image(
    conn: Client, image: str, kernel: str, initrd: str | None, modules: str | None
) -> str:
    import re

    from banger.api.shapes import KernelImport

    name = re.sub(r"[^a-z0-9._-]", "-", image.lower()).strip("-.")[:56] + "-kernel"
    body = KernelImport(name=name, kernel=_abs(kernel), initrd=_abs(initrd), modules=_abs(modules))
    common.run_operation(conn, conn.start("POST", "/kernels/import", body))
    return name


@image.command("register")
@click.argument("name")
@click.argument("rootfs")
@click.option("--kernel-ref", help="Kernel to boot it with (default: the default kernel).")
@click.option("--init", help="Init to run instead of the image's /sbin/init.")
def image_register(name: str, rootfs: str, kernel_ref: str | None, init: str | None) -> None:
    """Register an existing ext4 root filesystem ROOTFS as image NAME (used in place)."""
    from banger.api.shapes import Image, ImageRegister

    body = ImageRegister(name=name, rootfs=_abs(rootfs) or rootfs, kernel=kernel_ref, init=init)
    with common.client() as conn:
        registered = conn.send("POST", "/images/register", body, Image.from_json)
    click.echo(f"registered image {registered.name} ({registered.rootfs})")


@image.command("promote")
@click.argument("vm")
@click.argument("name")
@click.option("--size", help="Size of the image's disk (default: its files plus 25%, at least 1G).")
def image_promote(vm: str, name: str, size: str | None) -> None:
    """Make running VM's filesystem, as it is now, into image NAME.

    Set a VM up once (packages, tools, your dotfiles in /root), promote it, and
    every VM made from NAME starts that way. The VM keeps running.

    \b
    Example:
      banger vm create --name base --nat && banger vm ssh base -- apt-get install -y make
      banger image promote base dev-base && banger vm run --image dev-base -- make --version
    """
    from banger.api.shapes import Image, ImagePromote

    with common.client() as conn:
        op = conn.start("POST", "/images/promote", ImagePromote(vm=vm, name=name, size=size))
        promoted = Image.from_json(common.run_operation(conn, op).result or {})
    click.echo(f"image {promoted.name} ready ({promoted.rootfs})")


@image.command("delete")
@click.argument("names", nargs=-1, required=True)
def image_delete(names: tuple[str, ...]) -> None:
    """Delete images and their disks; refused while a VM uses one."""
    from banger.api.shapes import Image

    with common.client() as conn:
        for name in names:
            conn.send("DELETE", f"/images/{name}", None, Image.from_json)
            click.echo(f"deleted image {name}")


image.add_command(image_delete, "rm")


@image.group("cache")
def image_cache() -> None:
    """The cache of downloaded registry blobs."""


@image_cache.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
def image_cache_prune(dry_run: bool) -> None:
    """Delete every cached blob (images already pulled are not affected)."""
    from banger.api.shapes import CachePrune

    path = f"/images/cache/prune?dry_run={'true' if dry_run else 'false'}"
    with common.client() as conn:
        pruned = conn.send("POST", path, None, CachePrune.from_json)
    click.echo(pruned.message)


@image.command("catalog")
@common.json_option
def image_catalog(as_json: bool) -> None:
    """List the images `image pull` knows by name."""
    common.print_catalog("/images/catalog", as_json)


@image.command("list")
@common.json_option
def image_list(as_json: bool) -> None:
    """List pulled images."""
    from banger.api.shapes import Image
    from banger.units import format_size

    common.list_records(
        "/images",
        Image.from_json,
        as_json,
        ["NAME", "KERNEL", "SIZE", "SOURCE", "CREATED"],
        lambda i: (i.name, i.kernel, format_size(i.size_bytes), i.source, i.created_at),
        empty="no images yet: pull one with `banger image pull debian-bookworm`",
    )


image.add_command(image_list, "ls")


@image.command("show")
@click.argument("name")
@common.json_option
def image_show(name: str, as_json: bool) -> None:
    """Show one image."""
    from banger.api.shapes import Image

    common.show_record(f"/images/{name}", Image.from_json, as_json)


@click.group(
    epilog="""\b
Examples:
  banger kernel pull debian-bookworm-cloud
  banger kernel list
"""
)
def kernel() -> None:
    """Manage guest kernels and the initramfs banger builds for each.

    `image pull` fetches the default kernel itself; pull one by hand to
    prepare a host in advance.
    """


@kernel.command("pull")
@click.argument("name")
def kernel_pull(name: str) -> None:
    """Fetch kernel NAME from banger's catalog and build its initramfs."""
    from banger.api.shapes import Kernel, KernelPull

    with common.client() as conn:
        op = conn.start("POST", "/kernels/pull", KernelPull(name=name))
        pulled = Kernel.from_json(common.run_operation(conn, op).result or {})
    click.echo(f"kernel {name} {pulled.version} ready")


@kernel.command("import")
@click.argument("name")
@click.argument("directory", required=False)
@click.option("--kernel", "kernel_file", help="The kernel image file (instead of DIRECTORY).")
@click.option("--initrd", help="Its initramfs (must follow banger's boot contract).")
@click.option("--modules", help="Its lib/modules directory (banger builds the initramfs).")
def kernel_import(
    name: str,
    directory: str | None,
    kernel_file: str | None,
    initrd: str | None,
    modules: str | None,
) -> None:
    """Import a kernel you built or downloaded, as NAME.

    DIRECTORY holds vmlinuz* (or bzImage, vmlinux*) and lib/modules/VERSION
    or an initrd. Or name the pieces with --kernel, --initrd, --modules.
    """
    from banger.api.shapes import Kernel, KernelImport

    body = KernelImport(
        name=name,
        dir=_abs(directory),
        kernel=_abs(kernel_file),
        initrd=_abs(initrd),
        modules=_abs(modules),
    )
    with common.client() as conn:
        op = conn.start("POST", "/kernels/import", body)
        imported = Kernel.from_json(common.run_operation(conn, op).result or {})
    click.echo(f"kernel {name} {imported.version} ready")


@kernel.command("delete")
@click.argument("names", nargs=-1, required=True)
def kernel_delete(names: tuple[str, ...]) -> None:
    """Delete kernels; refused while an image refers to one."""
    from banger.api.shapes import Kernel

    with common.client() as conn:
        for name in names:
            conn.send("DELETE", f"/kernels/{name}", None, Kernel.from_json)
            click.echo(f"deleted kernel {name}")


kernel.add_command(kernel_delete, "rm")


@kernel.command("catalog")
@common.json_option
def kernel_catalog(as_json: bool) -> None:
    """List the kernels `kernel pull` knows by name."""
    common.print_catalog("/kernels/catalog", as_json)


@kernel.command("list")
@common.json_option
def kernel_list(as_json: bool) -> None:
    """List pulled kernels."""
    from banger.api.shapes import Kernel

    common.list_records(
        "/kernels",
        Kernel.from_json,
        as_json,
        ["NAME", "VERSION", "SOURCE", "CREATED"],
        lambda k: (k.name, k.version, k.source, k.created_at),
        empty="no kernels yet: pull one with `banger kernel pull debian-bookworm-cloud`",
    )


kernel.add_command(kernel_list, "ls")


@kernel.command("show")
@click.argument("name")
@common.json_option
def kernel_show(name: str, as_json: bool) -> None:
    """Show one kernel."""
    from banger.api.shapes import Kernel

    common.show_record(f"/kernels/{name}", Kernel.from_json, as_json)
