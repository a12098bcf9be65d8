"""``banger completion bash|zsh|fish``: click's own completion, with names from the daemon.

Commands and flags complete from the command tree; the arguments that name
a VM, an image or a kernel complete from a running bangerd (never started
for a completion, and silent when it is not there: a tab must not print
errors or wait).
"""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem, get_completion_class

from banger.cli.helptext import epilog

_PATHS = {"vm": "/vms", "image": "/images", "kernel": "/kernels"}
# The parameters, by group, that name a record of that group's kind.
_NAME_PARAMS = ("name", "names", "vm")


def names_from_daemon(path: str, incomplete: str) -> list[str]:
    from banger.api.client import Client
    from banger.config import load_settings

    try:
        conn = Client(load_settings(), timeout=2.0)
        try:
            records = conn.call("GET", path)
        finally:
            conn.close()
    except Exception:
        return []
    names = [str(r.get("name", "")) for r in records if isinstance(r, dict)]
    return [n for n in names if n.startswith(incomplete)]


def completer(path: str) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(n) for n in names_from_daemon(path, incomplete)]

    return complete


def attach(group: click.Group, kind: str | None = None) -> None:
    """Give every name argument under ``group`` its completion from the daemon."""
    for name, command in group.commands.items():
        sub_kind = name if name in _PATHS else kind
        if isinstance(command, click.Group):
            attach(command, sub_kind)
            continue
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
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # click knows all three; kept for a click that drops one
        raise click.BadParameter(f"no completion for {shell}")
    click.echo(cls(root, {}, "banger", "_BANGER_COMPLETE").source())
