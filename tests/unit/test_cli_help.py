"""Every command's --help, as a new user or an agent reads it at 80 columns."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from banger.cli.helptext import Group
from banger.cli.main import cli

# Commands are imported when first used; these tests walk the whole tree.
cli.load_all()

WIDTH = 80


def walk(
    cmd: click.Command = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


COMMANDS = list(walk())
IDS = [" ".join(path) or "banger" for path, _ in COMMANDS]


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.stdout


def section(text: str, title: str) -> list[str]:
    """The lines of a help section (``Commands:``, ``Examples:``), up to its blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line)
    return out


def banger_calls(command_line: str) -> list[list[str]]:
    """Each ``banger ...`` call in a shell line, its arguments split as a shell would."""
    calls = []
    segment: list[str] = []
    for word in [*shlex.split(command_line.partition("  # ")[0]), "|"]:
        if word in ("|", "&&", ";", ">"):
            if segment and segment[0] == "banger":
                calls.append(segment[1:])
            segment = [] if word != ">" else ["<redirect>"]
        else:
            segment.append(word)
    return calls


def example_invocations(text: str) -> list[list[str]]:
    """Each ``banger ...`` call in the Examples section."""
    return [call for line in section(text, "Examples:") for call in banger_calls(line.strip())]


def parse_failures(calls: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The calls whose flags and arguments the real command tree refuses; nothing runs."""
    called: list[str] = []
    for _, cmd in COMMANDS:
        if not isinstance(cmd, click.Group):
            monkeypatch.setattr(
                cmd, "callback", lambda *a, _name=cmd.name, **kw: called.append(_name)
            )
    runner = CliRunner()
    failures: list[object] = []
    for call in calls:
        before = len(called)
        result = runner.invoke(cli, call)
        if result.exit_code != 0 or len(called) != before + 1:
            failures.append((" ".join(call), result.output.strip()))
    return failures


def test_the_tree_has_every_group_and_command():
    assert {"vm", "image", "kernel", "daemon", "doctor", "version"} <= set(cli.commands)
    assert len(COMMANDS) > 35


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_has_runnable_examples_and_fits_80_columns(path, cmd):
    text = help_of(path)
    assert "Examples:" in text, f"`banger {' '.join(path)} --help` has no Examples section"
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, too_long
    calls = example_invocations(text)
    assert calls, "no example calls banger"


@pytest.mark.parametrize(
    ("path", "cmd"), [(p, c) for p, c in COMMANDS if isinstance(c, click.Group)], ids=str
)
def test_group_listing_has_whole_sentences_and_aliases_beside_commands(path, cmd):
    assert isinstance(cmd, Group), f"{path} should use banger's Group (aliases, help)"
    text = help_of(path)
    rows = section(text, "Commands:")
    names = []
    for row in rows:
        if row.startswith("    "):  # a wrapped description
            continue
        label, _, short = row.strip().partition("  ")
        name = label.split(" (")[0]
        names.append(name)
        aliases = label[len(name) :].strip(" ()")
        assert set(filter(None, aliases.split(", "))) == set(cmd.aliases_of(name))
    assert names == sorted(cmd.commands)
    # The symptom of `group.add_command(cmd, "ls")`: one command under two names, listed twice.
    assert len({id(sub) for sub in cmd.commands.values()}) == len(cmd.commands), (
        "an alias is registered as a command of its own: use Group.add_alias"
    )
    assert not set(cmd.aliases) & set(names)
    assert "..." not in "\n".join(rows), rows
    for name, sub in cmd.commands.items():
        short = sub.get_short_help_str(200)
        assert short.endswith("."), f"{name}: short help is not a sentence: {short!r}"
    assert "Next:" in text, "a group's help says what comes next"


def test_aliases_run_their_command():
    vm = cli.commands["vm"]
    assert isinstance(vm, Group)
    ctx = click.Context(vm)
    assert vm.get_command(ctx, "ls") is vm.commands["list"]
    assert vm.get_command(ctx, "rm") is vm.commands["delete"]


def test_every_example_parses_against_the_real_command_tree(monkeypatch):
    calls = [call for path, _ in COMMANDS for call in example_invocations(help_of(path))]
    assert len(calls) > 60
    assert not parse_failures(calls, monkeypatch)
