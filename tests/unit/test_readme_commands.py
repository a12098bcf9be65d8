"""The README names the commands that exist, and only those (outside "Not yet")."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from banger.cli.helptext import Group
from banger.cli.main import cli

from .test_cli_help import banger_calls, parse_failures

# Commands are imported when first used; these tests walk the whole tree.
cli.load_all()

README = (Path(__file__).parents[2] / "README.md").read_text()
NOT_YET = README.split("## Not yet", 1)[1]
BEFORE_NOT_YET = README.split("## Not yet", 1)[0]


def resolve(words: list[str]) -> tuple[str, ...] | None:
    """The command path that WORDS name, or None when one of them is no command."""
    cmd: click.Command = cli
    path: tuple[str, ...] = ()
    for word in words:
        if not isinstance(cmd, Group):
            break
        if word.startswith("-"):
            return path
        name = cmd.aliases.get(word, word)
        if name not in cmd.commands:
            return None
        cmd, path = cmd.commands[name], (*path, name)
    return path


def leaves(cmd: click.Command = cli, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if not isinstance(cmd, click.Group):
        return {path}
    return {leaf for name, sub in cmd.commands.items() for leaf in leaves(sub, (*path, name))}


def shell_lines(text: str) -> list[str]:
    """Lines of the README's code blocks that run banger."""
    blocks = re.findall(r"```(?:sh|console)\n(.*?)```", text, re.S)
    lines = [line.removeprefix("$ ") for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("banger ")]


def inline(text: str) -> list[str]:
    return re.findall(r"`(banger [^`]+)`", text)


def test_every_command_the_readme_runs_exists_and_parses(monkeypatch):
    calls = [call for line in shell_lines(BEFORE_NOT_YET) for call in banger_calls(line)]
    calls += [call for snippet in inline(BEFORE_NOT_YET) for call in banger_calls(snippet)]
    assert len(calls) > 15
    missing = [c for c in calls if resolve(c) is None]
    assert not missing
    # Only whole calls parse; `banger vm` in a table is a group, not a call.
    whole = [c for c in calls if resolve(c) in leaves()]
    assert not parse_failures(whole, monkeypatch)


def test_not_yet_names_no_command_that_exists():
    named = inline(NOT_YET)
    exists = [n for n in named if resolve(n.split()[1:]) is not None]
    assert not exists, f"README says 'Not yet' for commands that exist: {exists}"


def test_the_command_table_lists_every_command_and_alias():
    table: set[tuple[str, ...]] = set()
    aliases: set[tuple[str, ...]] = set()
    for group, cells in re.findall(r"^\| `banger ?([a-z -]*)` \| (.*) \|$", README, re.M):
        prefix = tuple(group.split()) if group else ()
        for name, alias in re.findall(r"`([a-z -]+)`(?: \(`([a-z]+)`\))?", cells):
            table.add((*prefix, *name.split()))
            if alias:
                aliases.add((*prefix, alias))
    assert table == leaves()
    real_aliases = set()
    for path in {p[:-1] for p in leaves()}:
        group = cli
        for word in path:
            group = group.commands[word]  # type: ignore[attr-defined]
        if isinstance(group, Group):
            real_aliases |= {(*path, alias) for alias in group.aliases}
    assert aliases == real_aliases


@pytest.mark.parametrize("group", ["vm", "image", "kernel", "daemon"])
def test_each_group_has_a_row(group):
    assert f"| `banger {group}` |" in README
