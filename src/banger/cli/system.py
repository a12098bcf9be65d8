"""``banger system``: bangerd as a service of its owner, banger-helper as root."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog
from banger.errors import DaemonUnavailable, UserError

WAIT_TIMEOUT = 30.0

_root_option = click.option(
    "--root",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    hidden=True,
    help="Install under this directory instead of / (tests).",
)


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger system install  # as root (sudo), for the user running sudo",
            "banger system install --owner alice",
            "banger system status",
            "banger system restart  # as root, after upgrading banger",
            "banger system uninstall  # keeps images and VMs; --purge removes them",
        ],
        next_step="after install, the owner runs `banger vm run -- uname -a` as usual: the CLI"
        " finds the installed daemon by itself.",
    ),
)
def system() -> None:
    """Run banger as system services instead of per-user processes.

    Without this, banger starts its daemon on demand and needs root for its
    helper. `banger system install` sets up two systemd services: bangerd
    runs as one owner, without any privilege, keeping state in
    /var/lib/banger; banger-helper runs as root and does only the few
    network steps VMs need, for that owner alone.
    """


def _need_root(root: Path) -> None:
    if os.geteuid() != 0:
        raise UserError("installing system services needs root", hint="sudo banger system install")


def _wait_for_daemon() -> None:
    from banger.api.client import Client
    from banger.config import load_settings

    client = Client(load_settings(mode="system"))
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        if client.ping():
            return
        time.sleep(0.2)
    raise DaemonUnavailable(
        f"bangerd did not answer within {WAIT_TIMEOUT:.0f}s after starting",
        hint="see `journalctl -u bangerd -u banger-helper`, then `banger system status`",
    )


def _start(systemd: Any, verb: str) -> bool:
    if not systemd.running:
        click.echo(systemd.why_not())
        return False
    systemd.run("daemon-reload")
    if verb == "enable":
        systemd.run("enable", "--now", "banger-helper.service", "bangerd.service")
    else:
        systemd.run("restart", "banger-helper.service", "bangerd.service")
    _wait_for_daemon()
    return True


@system.command(
    epilog=epilog(
        ["banger system install  # as root", "banger system install --owner alice --no-start"],
        next_step="`banger system status`.",
    )
)
@click.option("--owner", metavar="USER", help="Who runs VMs (default: the user running sudo).")
@click.option("--no-start", is_flag=True, help="Write the units but do not start them.")
@_root_option
def install(owner: str | None, no_start: bool, root: Path) -> None:
    """Install bangerd (as OWNER) and banger-helper (as root) as systemd services.

    Writes the two units, /etc/banger/install.json, and /var/lib/banger and
    /var/cache/banger owned by OWNER; then starts both and waits until the
    daemon answers. Running it again updates an install.
    """
    from banger.sysinstall import install as sysinstall
    from banger.sysinstall.install import Systemd

    _need_root(root)
    entry = sysinstall.owner_of(owner)
    lay = sysinstall.layout(entry, root, check_code=root == Path("/"))
    sysinstall.write(lay)
    click.echo(f"installed banger {lay.owner!r} (uid {lay.uid}) under {root}")
    for path in lay.unit_paths.values():
        click.echo(f"  {path}")
    if not no_start and _start(Systemd(root), "enable"):
        click.echo("bangerd answers on /run/banger/bangerd/bangerd.sock")


@system.command(epilog=epilog(["banger system status", "banger system status --json"]))
@common.json_option
@_root_option
def status(as_json: bool, root: Path) -> None:
    """Show the install: owner, versions, units and sockets."""
    from banger import __version__
    from banger.sysinstall import install as sysinstall
    from banger.sysinstall.install import UNITS, Systemd

    meta = sysinstall.read_metadata(root)
    if meta is None:
        if as_json:
            common.print_json({"installed": False})
            return
        click.echo("banger is not installed as a system service (see `banger system install`)")
        return
    systemd = Systemd(root)
    facts: dict[str, Any] = {
        "installed": True,
        "owner": meta.get("owner"),
        "uid": meta.get("uid"),
        "installed_version": meta.get("version"),
        "this_version": __version__,
        "units": {unit: systemd.state(unit) for unit in UNITS},
        "sockets": [
            sysinstall.socket_facts(root / str(meta[key]).lstrip("/"))
            for key in ("socket", "helper_socket")
        ],
    }
    if as_json:
        common.print_json(facts)
        return
    click.echo(f"owner      {facts['owner']} (uid {facts['uid']})")
    click.echo(f"version    installed {facts['installed_version']}, this banger {__version__}")
    for unit, state in facts["units"].items():
        click.echo(f"unit       {unit}: {state}")
    for sock in facts["sockets"]:
        there = f"{sock['owner']} {sock['mode']}" if sock["exists"] else "absent"
        click.echo(f"socket     {sock['path']}: {there}")


@system.command(epilog=epilog(["banger system restart  # as root"]))
def restart() -> None:
    """Restart both services (after an upgrade) and wait until the daemon answers."""
    from banger.sysinstall.install import Systemd

    _need_root(Path("/"))
    if _start(Systemd(Path("/")), "restart"):
        click.echo("bangerd restarted and answers")


@system.command(
    epilog=epilog(["banger system uninstall  # as root", "banger system uninstall --purge"])
)
@click.option("--purge", is_flag=True, help="Also delete state, images, VMs' disks and cache.")
@_root_option
def uninstall(purge: bool, root: Path) -> None:
    """Stop and remove the services; keep /var/lib/banger unless --purge."""
    from banger.sysinstall import install as sysinstall
    from banger.sysinstall.install import UNITS, Systemd

    _need_root(root)
    systemd = Systemd(root)
    if systemd.running:
        systemd.run("disable", "--now", *UNITS)
    else:
        click.echo(systemd.why_not())
    removed = sysinstall.remove(root, purge=purge)
    if systemd.running:
        systemd.run("daemon-reload")
    for path in removed:
        click.echo(f"removed {path}")
    if not purge:
        click.echo("kept /var/lib/banger and /var/cache/banger (remove them with --purge)")
