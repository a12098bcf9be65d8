"""The ``banger`` command: a thin client of bangerd."""

from __future__ import annotations

import json
import sys

import click

from banger import __version__
from banger.cli import completion, vm_exec, vm_inspect, vm_lifecycle, vm_port
from banger.cli.daemon import daemon, doctor
from banger.cli.helptext import Group, epilog
from banger.cli.image import image
from banger.cli.kernel import kernel
from banger.cli.mcp import mcp
from banger.cli.reset import reset
from banger.cli.snapshot import fork, snapshot
from banger.cli.sshconfig import ssh_config
from banger.cli.system import system
from banger.cli.vm import vm
from banger.cli.workspace import workspace
from banger.errors import BangerError


@click.group(
    cls=Group,
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
        click.echo(json.dumps({"version": __version__}))
        return
    click.echo(__version__)


for _command in (
    *vm_lifecycle.COMMANDS,
    *vm_inspect.COMMANDS,
    *vm_exec.COMMANDS,
    vm_port.port,
    workspace,
    workspace,
    snapshot,
    fork,
):
    vm.add_command(_command)
cli.add_command(vm)
cli.add_command(image)
cli.add_command(kernel)
cli.add_command(daemon)
cli.add_command(doctor)
cli.add_command(reset)
cli.add_command(ssh_config)
cli.add_command(completion.completion)
cli.add_command(mcp)
completion.attach(cli)
cli.add_command(system)


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


def main() -> None:
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
