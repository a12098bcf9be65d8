"""The ``banger`` command tree (click): a thin client of bangerd.

``banger.cli.main`` is the entry point; it answers ``--help`` and tab
completion from a table made from this tree (``banger.cli.fastgen``) and
imports this module for everything else.
"""

from __future__ import annotations

import sys

import click

from banger import __version__
from banger.cli.helptext import epilog
from banger.cli.lazy import Lazy, LazyGroup
from banger.errors import BangerError

# Imported only when used (see banger.cli.lazy): `banger --help` and a tab load
# none of them, `banger vm ...` loads the vm group alone.
COMMANDS = {
    "vm": Lazy("banger.cli.vm:vm", "Create, use and delete microVMs."),
    "image": Lazy("banger.cli.image:image", "Manage images: the root filesystems VMs boot from."),
    "kernel": Lazy(
        "banger.cli.kernel:kernel",
        "Manage guest kernels and the initramfs banger builds for each.",
    ),
    "daemon": Lazy(
        "banger.cli.daemon:daemon", "Manage bangerd, the daemon that owns VMs, images and kernels."
    ),
    "doctor": Lazy(
        "banger.cli.daemon:doctor",
        "Check every host prerequisite and say how to fix what is missing.",
    ),
    "reset": Lazy(
        "banger.cli.reset:reset",
        "Remove everything banger made on this host: VMs, images, kernels, state.",
    ),
    "ssh-config": Lazy(
        "banger.cli.sshconfig:ssh_config",
        "Make `ssh NAME.vm` work with banger's key and each VM's pinned host key.",
    ),
    "completion": Lazy(
        "banger.cli.completion:completion", "Print the shell completion script for SHELL."
    ),
    "mcp": Lazy(
        "banger.cli.mcp:mcp",
        "Serve banger to an AI coding agent over the Model Context Protocol (stdio).",
    ),
    "system": Lazy(
        "banger.cli.system:system", "Run banger as system services instead of per-user processes."
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=epilog(
        [
            "banger doctor  # what this host can and cannot do",
            "banger image pull debian-bookworm  # build the default image (once)",
            "banger vm run -- uname -a  # a fresh VM runs one command, then goes",
            "banger vm create --name dev  # a VM that stays",
            "banger vm ssh dev  # a shell in it",
        ],
        next_step="`banger vm --help` for everything a VM can do; `banger COMMAND --help`"
        " for the rest; `banger completion --help` for tab completion.",
    ),
)
@click.option("--debug", is_flag=True, help="Show debug logs and tracebacks.")
@click.version_option(__version__, prog_name="banger")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """banger: disposable Linux microVMs for developers and coding agents.

    Each VM boots from an image in one command, gets its own copy-on-write
    disk, an address on banger's bridge and SSH with pinned keys. The 80%
    command is `banger vm run -- CMD`: a fresh VM runs CMD and goes away.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


@cli.command(epilog=epilog(["banger version", "banger version --json"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def version(as_json: bool) -> None:
    """Print banger's version."""
    if as_json:
        import json

        click.echo(json.dumps({"version": __version__}))
        return
    click.echo(__version__)


def _usage_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "banger"
    if isinstance(exc, click.NoSuchOption) and path.endswith((" ssh", " run", " exec")):
        return (
            f"options after the VM's name are banger's until `--`: {path} NAME -- CMD ARGS;"
            " banger's --debug goes first: banger --debug vm ..."
        )
    return f"see `{path} --help`"


def fail(message: str, hint: str | None, code: int) -> None:
    """banger's one error format: `error: ...`, then `hint: ...`, on stderr."""
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def run() -> None:
    """Run the command line in ``sys.argv`` through click, banger's errors as banger shows them."""
    debug = "--debug" in sys.argv[1:]
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        message = exc.format_message()
        fail(message[:1].lower() + message[1:], _usage_hint(exc), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BangerError as exc:
        if debug:
            raise
        from banger.cli.common import flag_error

        fail(*flag_error(exc), exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
