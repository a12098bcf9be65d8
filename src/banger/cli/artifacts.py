"""``banger image`` and ``banger kernel``."""

from __future__ import annotations

import click

from banger.cli import common


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


@image.command("pull")
@click.argument("name")
@click.option("--kernel-ref", "kernel", help="Kernel to boot it with (default: the catalog's).")
def image_pull(name: str, kernel: str | None) -> None:
    """Build or fetch image NAME from banger's catalog (see `image catalog`)."""
    with common.client() as conn:
        op = conn.post("/images/pull", {"name": name, "kernel": kernel})
        result = common.run_operation(conn, op).result or {}
    click.echo(f"image {result.get('name', name)} ready ({result.get('rootfs', '')})")


@image.command("catalog")
@common.json_option
def image_catalog(as_json: bool) -> None:
    """List the images `image pull` knows by name."""
    from banger.image import catalog

    common.print_catalog(catalog.entries(), as_json)


@image.command("list")
@common.json_option
def image_list(as_json: bool) -> None:
    """List pulled images."""
    from banger.units import format_size

    common.list_records(
        "/images",
        as_json,
        ["NAME", "KERNEL", "SIZE", "SOURCE", "CREATED"],
        lambda i: (
            i["name"],
            i["kernel"],
            format_size(i["size_bytes"]),
            i["source"],
            i["created_at"],
        ),
        empty="no images yet: pull one with `banger image pull debian-bookworm`",
    )


image.add_command(image_list, "ls")


@image.command("show")
@click.argument("name")
@common.json_option
def image_show(name: str, as_json: bool) -> None:
    """Show one image."""
    common.show_record(f"/images/{name}", as_json)


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
    with common.client() as conn:
        op = conn.post("/kernels/pull", {"name": name})
        result = common.run_operation(conn, op).result or {}
    click.echo(f"kernel {name} {result.get('version', '')} ready")


@kernel.command("catalog")
@common.json_option
def kernel_catalog(as_json: bool) -> None:
    """List the kernels `kernel pull` knows by name."""
    from banger.kernel import catalog

    common.print_catalog(catalog.entries(), as_json)


@kernel.command("list")
@common.json_option
def kernel_list(as_json: bool) -> None:
    """List pulled kernels."""
    common.list_records(
        "/kernels",
        as_json,
        ["NAME", "VERSION", "SOURCE", "CREATED"],
        lambda k: (k["name"], k["version"], k["source"], k["created_at"]),
        empty="no kernels yet: pull one with `banger kernel pull debian-bookworm-cloud`",
    )


kernel.add_command(kernel_list, "ls")


@kernel.command("show")
@click.argument("name")
@common.json_option
def kernel_show(name: str, as_json: bool) -> None:
    """Show one kernel."""
    common.show_record(f"/kernels/{name}", as_json)
