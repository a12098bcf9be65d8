"""``banger vm exec`` (a command in the workspace) and ``banger vm cp``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from banger.cli import common
from banger.cli.helptext import epilog
from banger.workspace.access import channel_to, find_workspace

if TYPE_CHECKING:
    from banger.api.shapes import Workspace
    from banger.workspace.channel import SshChannel


def warn_if_drifted(name: str, ws: Workspace) -> None:
    """Dirty detection: say on stderr when the host checkout moved since prepare."""
    from banger.errors import BangerError
    from banger.workspace.export import drift

    try:
        moved = drift(ws)
    except BangerError:
        return  # a checkout that cannot be read now must not stop the command
    if moved:
        click.echo(
            f"warning: the checkout at {ws.host_path} changed since it was copied into {name}"
            f" ({moved}); the guest has the old copy. Refresh it (replacing the guest's changes:"
            f" export them first with `banger vm workspace export {name} -o FILE`):"
            f" banger vm workspace prepare {name} {ws.host_path}",
            err=True,
        )


def _env_pairs(env: tuple[str, ...]) -> dict[str, str]:
    from banger.errors import UserError

    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum():
            raise UserError(f"--env {item!r} is not KEY=VALUE", hint="e.g. --env DEBUG=1")
        pairs[key] = value
    return pairs


@click.command(
    "exec",
    epilog=epilog(
        [
            "banger vm exec dev -- make test  # in the workspace",
            "banger vm exec dev --env CI=1 -- pytest -q",
            "banger vm exec dev --cwd /tmp -- ls -la",
            "git diff | banger vm exec dev -- git apply  # stdin passes through",
            "banger vm exec -t dev -- bash  # a terminal",
            "banger vm exec dev --timeout 60 -- make test  # killed after a minute",
        ],
        next_step="`banger vm workspace export dev -o changes.patch` brings the changes back.",
    ),
)
@click.argument("name")
@click.option("--cwd", metavar="DIR", help="Run in DIR (default: the workspace, else /root).")
@click.option(
    "-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set a variable (repeatable)."
)
@click.option(
    "-t", "--tty", is_flag=True, help="Give COMMAND a terminal (for shells, editors, top)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Kill COMMAND after SECONDS (exit code 124).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    name: str,
    cwd: str | None,
    env: tuple[str, ...],
    tty: bool,
    timeout: float | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in VM NAME, in its workspace directory.

    stdout and stderr stay apart, stdin passes through, the exit code is
    COMMAND's (127: no such command in the guest; 128+N: killed by signal
    N). Ctrl-C and other signals reach COMMAND. It goes through banger's
    guest agent when the VM has one, over SSH otherwise. When the host
    checkout changed after `vm workspace prepare` (new commits, edited or
    added files), a warning on stderr says what and how to refresh. COMMAND
    is an argv: `-- sh -c 'a && b'` for a shell line.
    """
    from banger.workspace.agent_channel import AgentChannel

    pairs = _env_pairs(env)
    with common.client() as conn:
        ws = find_workspace(conn, name)
        channel = channel_to(conn, name)
    if ws is not None:
        warn_if_drifted(name, ws)
    directory = cwd or (ws.guest_path if ws else "/root")
    if isinstance(channel, AgentChannel):
        from banger.cli.exec_io import run_command

        code = run_command(channel, command, cwd=directory, env=pairs, tty=tty, timeout=timeout)
        raise SystemExit(code)
    if tty or timeout is not None:
        raise SystemExit(_over_ssh(channel, command, directory, pairs, tty, timeout))
    raise SystemExit(channel.run(command, cwd=directory, env=pairs, stdin=None))


def _over_ssh(
    channel: SshChannel,
    command: tuple[str, ...],
    cwd: str,
    env: dict[str, str],
    tty: bool,
    timeout: float | None,
) -> int:
    """-t and --timeout for a VM without banger's agent: ssh -tt, and timeout(1) in the guest."""
    from banger import proc
    from banger.api.ssh import ssh_argv
    from banger.workspace.channel import in_guest_argv

    argv = list(command)
    if timeout is not None:
        argv = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
    ssh = ssh_argv(channel.target, in_guest_argv(argv, cwd, env), tty=tty)
    return proc.popen(ssh, stdin=None).wait()


@click.command(
    epilog=epilog(
        [
            "banger vm cp ./build.sh dev:/root/  # into a directory in the VM",
            "banger vm cp dev:/var/log/syslog ./syslog  # out, under a new name",
            "banger vm cp ./src dev:/root/src-copy  # a directory, modes kept",
        ]
    )
)
@click.argument("src")
@click.argument("dest")
def cp(src: str, dest: str) -> None:
    """Copy a file or directory between the host and a VM, like `docker cp`.

    One side is NAME:PATH. An existing directory as DEST receives SRC inside
    it; otherwise DEST is SRC's new name, and its parent must exist. Modes
    are kept; the copy is renamed into place only when complete.
    """
    from banger.errors import UserError
    from banger.workspace import copy

    source, target = copy.parse(src), copy.parse(dest)
    if (source.vm is None) == (target.vm is None):
        raise UserError(
            "one of SRC and DEST must be NAME:PATH (a path in a VM), the other a host path",
            hint="e.g. banger vm cp ./file dev:/root/",
        )
    vm = source.vm or target.vm or ""
    with common.client() as conn:
        channel = channel_to(conn, vm)
    if target.vm is not None:
        landed = copy.to_guest(channel, Path(source.path), target.path, vm)
        click.echo(f"copied {source.path} to {vm}:{landed}")
    else:
        host = copy.from_guest(channel, source.path, Path(target.path), vm)
        click.echo(f"copied {vm}:{source.path} to {host}")
