"""Groups whose commands are imported when first used, not when ``banger`` starts.

A tab completion or a ``--help`` would otherwise import every command module
(and what they import) to use one of them, which is most of what they cost
after Python and click. A ``LazyGroup`` holds, per command it has not loaded,
where the command lives and its one-line description: enough to list it in
``--help`` and offer it on a tab. Anything else (running it, its own
``--help``, completing its arguments) imports its module then. A unit test
loads every command and checks each description against the command's own
docstring, so the table cannot drift from what the command says.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import click

from banger.cli import completion
from banger.cli.helptext import Group

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class Lazy(NamedTuple):
    """Where a command lives (``module:attribute``) and the first sentence of its help."""

    target: str
    help: str
    hidden: bool = False


class LazyGroup(Group):
    """A banger ``Group`` that also has commands it imports on first use.

    ``kind`` is the record kind its name arguments complete from (``vm`` for
    ``banger vm``); commands get their completion as they are loaded.
    """

    def __init__(
        self,
        *args: object,
        lazy: Mapping[str, Lazy] | None = None,
        kind: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, Lazy] = dict(lazy or {})
        self.kind = kind

    def add_alias(self, alias: str, name: str) -> None:
        if name in self.lazy:
            self.aliases[alias] = name
            return
        super().add_alias(alias, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.aliases.get(cmd_name, cmd_name)
        if name not in self.commands and name in self.lazy:
            self._load(name)
        return super().get_command(ctx, name)

    def _load(self, name: str) -> click.Command:
        module, _, attribute = self.lazy[name].target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # a wrong table entry, caught by the tests
            raise TypeError(f"{self.lazy[name].target} is not a click command")
        self.add_command(command, name)
        completion.attach(name, command, self.kind)
        return command

    def load_all(self) -> None:
        """Import every command (and those of lazy groups below): for walking the whole tree."""
        for name in self.lazy:
            if name not in self.commands:
                self._load(name)
        for command in self.commands.values():
            if isinstance(command, LazyGroup):
                command.load_all()

    def listing(self, ctx: click.Context, name: str, limit: int) -> str | None:
        if name in self.commands or name not in self.lazy:
            return super().listing(ctx, name, limit)
        entry = self.lazy[name]
        if entry.hidden:
            return None
        # click's own shortening, applied to the sentence the command's docstring starts with.
        return click.Command(name, help=entry.help).get_short_help_str(limit)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """click's completion of a group (commands, then options), without loading commands."""
        from click.shell_completion import CompletionItem  # --help does without it

        results = []
        for name in self.list_commands(ctx):
            if name.startswith(incomplete):
                short = self.listing(ctx, name, 45)  # click's default width for completions
                if short is not None:
                    results.append(CompletionItem(name, help=short))
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results
