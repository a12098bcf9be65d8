"""``banger completion bash|zsh|fish``: click's own completion, with names from the daemon.

Commands and flags complete from the command tree; the arguments that name
a VM, an image or a kernel complete from a running bangerd (never started
for a completion, and silent when it is not there: a tab must not print
errors or wait).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from banger.cli.helptext import epilog
from banger.cli.names import PATHS as _PATHS
from banger.cli.names import names_from_daemon

if TYPE_CHECKING:
    # At run time only where a completion happens: `banger --help` does without it.
    from click.shell_completion import CompletionItem

# The parameters, by group, that name a record of that group's kind.
_NAME_PARAMS = ("name", "names", "vm")


class NamesCompleter:
    """A parameter's completion: the names under ``path`` (``/vms``) from a running bangerd.

    An object, not a closure, so the fast path's table (``banger.cli.fastgen``)
    can read which names a parameter completes.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in names_from_daemon(self.path, incomplete)]


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
            param._custom_shell_complete = NamesCompleter(path)


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
