"""How banger's help reads: groups that show aliases as aliases, and example epilogs.

Agents learn a CLI from ``--help``, so every command ends with examples that
run and every group says what comes next. This module stays import-light:
it is loaded for every ``--help``.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

# Wide enough for any first sentence banger writes; click's own default (45)
# cuts sentences off with "..." in the command listing.
_SHORT_HELP_LIMIT = 200


class Group(click.Group):
    """A click group whose aliases resolve to their command and are listed beside it.

    ``banger vm ls`` runs ``list``; ``banger vm --help`` shows ``list (ls)``
    once instead of two commands with the same description.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.aliases: dict[str, str] = {}

    def add_alias(self, alias: str, name: str) -> None:
        if name not in self.commands:
            raise ValueError(f"alias {alias!r} names no command {name!r}")
        self.aliases[alias] = name

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self.aliases.items() if target == name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def listing(self, ctx: click.Context, name: str, limit: int) -> str | None:
        """What the command listing says of ``name``; None for a hidden command."""
        cmd = self.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            return None
        return cmd.get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            short = self.listing(ctx, name, _SHORT_HELP_LIMIT)
            if short is None:
                continue
            aliases = self.aliases_of(name)
            label = f"{name} ({', '.join(aliases)})" if aliases else name
            rows.append((label, short))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def epilog(examples: Sequence[str], *, next_step: str = "") -> str:
    """An ``Examples:`` block (comments after ``  # `` aligned), then an optional ``Next:``.

    The leading ``\\b`` keeps click from re-wrapping the lines.
    """
    split = [line.partition("  # ") for line in examples]
    width = max((len(cmd) for cmd, sep, _ in split if sep), default=0)
    lines = ["\b", "Examples:"]
    for cmd, sep, comment in split:
        lines.append(f"  {cmd.ljust(width)}  # {comment}" if sep else f"  {cmd}")
    text = "\n".join(lines) + "\n"
    # Its own paragraph, so click wraps it to the terminal.
    return f"{text}\nNext: {next_step}\n" if next_step else text
