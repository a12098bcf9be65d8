"""Every `banger ...` command that a message or help text tells people to run exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from banger.cli.main import cli

SRC = Path(__file__).resolve().parents[2] / "src" / "banger"
# A command as messages quote it: `banger vm start dev`, `sudo banger image pull ...`.
QUOTED = re.compile(r"`(?:sudo )?banger((?: [a-z][a-z-]*)+)")


def resolves(words: list[str]) -> bool:
    """Whether the leading words name a command of the CLI (the rest are arguments)."""
    command: click.Command = cli
    used = 0
    for word in words:
        if not isinstance(command, click.Group):
            break
        ctx = click.Context(command)
        sub = command.get_command(ctx, word)
        if sub is None:
            break
        command, used = sub, used + 1
    # A group alone is fine only when the quote stops there (`banger vm`).
    return used > 0 and (not isinstance(command, click.Group) or used == len(words))


def quoted_commands() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for match in QUOTED.finditer(path.read_text()):
            found.append((str(path.relative_to(SRC)), match.group(1).strip()))
    return found


def test_every_quoted_command_exists() -> None:
    quoted = quoted_commands()
    assert len(quoted) > 30  # the scan finds the hints at all
    missing = sorted({(where, words) for where, words in quoted if not resolves(words.split())})
    assert missing == []


def test_the_scan_catches_a_command_that_does_not_exist() -> None:
    assert not resolves(["system", "frobnicate"])
    assert not resolves(["vm", "frobnicate"])
    assert resolves(["vm", "start", "dev"])
    assert resolves(["image", "cache", "prune"])
    assert resolves(["vm", "ls"])
