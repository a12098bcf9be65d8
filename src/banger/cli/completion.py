"""``banger completion bash|zsh|fish``: click's own completion, with names from the daemon.

Commands and flags complete from the command tree; the arguments that name
a VM, an image or a kernel complete from a running bangerd (never started
for a completion, and silent when it is not there: a tab must not print
errors or wait).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from banger.cli.helptext import epilog

if TYPE_CHECKING:
    # At run time only where a completion happens: `banger --help` does without it.
    from click.shell_completion import CompletionItem

_PATHS = {"vm": "/vms", "image": "/images", "kernel": "/kernels"}
# The parameters, by group, that name a record of that group's kind.
_NAME_PARAMS = ("name", "names", "vm")


def names_from_daemon(path: str, incomplete: str) -> list[str]:
    """The names of the records under ``path`` (``/vms``) that start with ``incomplete``.

    Nothing, quietly, when bangerd is not there or does not answer.
    """
    # One GET on the socket and json, not banger.api.client: a tab pays for every
    # module it imports. `/names/vms` answers from the store alone.
    status, answer = _answer(f"/names{path}")
    names = answer.get("names") if isinstance(answer, dict) else None
    if status == 404:  # a daemon older than this CLI: only the full listing has them
        status, answer = _answer(path)
        records = answer if isinstance(answer, list) else []
        names = [r.get("name") for r in records if isinstance(r, dict)]
    if status != 200 or not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and n.startswith(incomplete)]


def _answer(path: str) -> tuple[int, Any]:
    """The status and JSON answered to ``GET path``; 0 when there was no answer to read."""
    import json

    from banger import rundir
    from banger.api import transport
    from banger.config import load_settings

    try:
        settings = load_settings()
        # As the client does: a socket is only as trustworthy as its directory.
        rundir.check_private_dir(settings.runtime_dir, rundir.trusted_owners(settings))
        with transport.request(str(settings.socket), "GET", path, timeout=2.0) as resp:
            return resp.status, json.loads(resp.read())
    except Exception:
        return 0, None


def completer(path: str) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in names_from_daemon(path, incomplete)]

    return complete


def attach(name: str, command: click.Command, kind: str | None = None) -> None:
    """Give the name arguments of ``command`` (and of its subcommands) completion from the daemon.

    ``name`` is what ``command`` is called under its group, ``kind`` the record
    kind of that group (``vm`` under ``banger vm``). Commands of a lazy group
    below are attached when that group loads them.
    """
    sub_kind = name if name in _PATHS else kind
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            attach(sub_name, sub, sub_kind)
        return
    for param in command.params:
        path = None
        if param.name == "vm" and isinstance(param, click.Argument):
            path = _PATHS["vm"]  # `image promote VM NAME`: the VM to promote
        elif sub_kind and param.name in _NAME_PARAMS and isinstance(param, click.Argument):
            path = _PATHS[sub_kind]
        elif param.name == "image" and isinstance(param, click.Option):
            path = _PATHS["image"]
        if path is not None:
            param._custom_shell_complete = completer(path)


@click.command(
    epilog=epilog(
        [
            'eval "$(banger completion bash)"  # in ~/.bashrc',
            'eval "$(banger completion zsh)"  # in ~/.zshrc',
            "banger completion fish > ~/.config/fish/completions/banger.fish",
        ]
    )
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    It completes commands, flags, and the names of VMs, images and kernels
    (asked of a running bangerd).
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # click knows all three; kept for a click that drops one
        raise click.BadParameter(f"no completion for {shell}")
    click.echo(cls(root, {}, "banger", "_BANGER_COMPLETE").source())
