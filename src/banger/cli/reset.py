"""``banger reset``: take every trace of banger off this host, for a user install."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from banger.cli import common
from banger.cli.helptext import epilog

if TYPE_CHECKING:
    from banger.config import Settings


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_blocks * 512
    return total


def _check_removable(home: Path) -> None:
    from banger.errors import UserError

    resolved = home.resolve()
    if resolved in (Path("/"), Path.home().resolve()) or len(resolved.parts) < 3:
        raise UserError(
            f"refusing to remove {home}: it is not a directory of banger's own",
            hint="set BANGER_HOME (or `home` in the config) to banger's state directory",
        )


@click.command(
    epilog=epilog(
        [
            "banger reset  # asks, then removes VMs, images, kernels",
            "banger reset --force  # for scripts: no question",
        ],
        next_step="`banger image pull debian-bookworm` to start again.",
    )
)
@click.option("--force", is_flag=True, help="Do not ask (needed without a terminal).")
def reset(force: bool) -> None:
    """Remove everything banger made on this host: VMs, images, kernels, state.

    Deletes every VM (stopping it first), stops the daemon, which takes down
    banger's bridge and the helper it started, then removes banger's state
    directory with its images, kernels and caches. Irreversible.
    """
    from banger.errors import UserError

    settings = common.settings()
    if settings.mode == "system":
        raise UserError(
            "this banger runs as a system install; reset is for a user's own install",
            hint="stop banger's services, then remove /var/lib/banger and /var/cache/banger",
        )
    home = settings.home
    _check_removable(home)
    present = home.exists()
    size = _size(home) if present else 0
    if not force:
        if not sys.stdin.isatty():
            raise UserError(
                "reset asks before removing anything, and there is no terminal to ask on",
                hint="pass --force to remove without asking",
            )
        from banger.units import format_size

        click.confirm(
            f"remove every VM, image and kernel, and {home} ({format_size(size)})?", abort=True
        )
    deleted = _delete_vms_and_stop(settings)
    for path in (home, settings.runtime_dir):
        shutil.rmtree(path, ignore_errors=True)
    from banger.units import format_size

    click.echo(
        f"removed {deleted} VM(s) and {format_size(size)} in {home}"
        if present
        else "nothing to remove: banger has no state on this host"
    )


def _delete_vms_and_stop(settings: Settings) -> int:
    """Delete every VM through the daemon (so taps and NAT go too), then stop it."""
    from banger.api.shapes import Accepted, DaemonStatus, Vm
    from banger.errors import DaemonUnavailable

    if not settings.home.exists():
        return 0
    with common.client() as conn:
        names = [vm.name for vm in conn.get_list("/vms", Vm.from_json)]
        for name in names:
            common.run_operation(conn, conn.start("DELETE", f"/vms/{name}"), label=name)
        pid = conn.get("/status", DaemonStatus.from_json).pid
        with contextlib.suppress(DaemonUnavailable):
            conn.send("POST", "/shutdown", None, Accepted.from_json)
    if not common.process_gone(pid, 30):
        raise DaemonUnavailable(
            f"bangerd (pid {pid}) did not stop within 30s; nothing was removed",
            hint="see `banger daemon status`, then run `banger reset` again",
        )
    return len(names)
