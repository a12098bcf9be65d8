"""Make the table ``banger.cli.fast`` answers ``--help`` and a tab from, out of the click tree.

    python -m banger.cli.fastgen   # writes banger/cli/_fasttable.py (`make venv` runs it)

Everything in the table is what click itself says: each group's ``--help``
rendered by click at every width click can choose, each group's command
completions formatted by click's own bash, zsh and fish classes, and, per
command, which of its parameters complete names from bangerd. The table
records the size and modification time of every module of banger and click
loaded while it was made; when any of them changes, the fast path stops
using the table (and click answers, a little slower) until this runs again.
"""

from __future__ import annotations

import contextlib
import io
import os
import py_compile
import sys
from pathlib import Path
from typing import Any

import click
from click import formatting
from click.shell_completion import CompletionItem, get_completion_class

from banger.cli import fast
from banger.cli.completion import NamesCompleter
from banger.cli.root import cli

# The widths click's HelpFormatter can choose: max(min(columns, max_width) - 2, 50).
_MIN_WIDTH = 50


def _groups(path: tuple[str, ...], cmd: click.Command) -> list[tuple[tuple[str, ...], click.Group]]:
    if not isinstance(cmd, click.Group):
        return []
    found = [(path, cmd)]
    for name in sorted(cmd.commands):
        found += _groups((*path, name), cmd.commands[name])
    return found


def _leaves(
    path: tuple[str, ...], cmd: click.Command
) -> list[tuple[tuple[str, ...], click.Command]]:
    if not isinstance(cmd, click.Group):
        return [(path, cmd)]
    return [
        leaf for name in sorted(cmd.commands) for leaf in _leaves((*path, name), cmd.commands[name])
    ]


def render_help(path: tuple[str, ...], width: int) -> str:
    """What ``banger PATH --help`` writes to stdout when click's formatter is ``width`` wide."""
    out = io.StringIO()
    saved = formatting.FORCED_WIDTH
    formatting.FORCED_WIDTH = width
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main([*path, "--help"], prog_name="banger", standalone_mode=False)
    finally:
        formatting.FORCED_WIDTH = saved
    text = out.getvalue()
    if code != 0 or "\x1b" in text:  # click would strip escapes off a pipe; the table cannot
        raise RuntimeError(f"banger {' '.join(path)} --help is not plain text with exit code 0")
    return text


def _helps(max_width: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    helps = {}
    for path, _ in _groups((), cli):
        texts: list[str] = []
        index = []
        for width in range(_MIN_WIDTH, max(max_width - 2, _MIN_WIDTH) + 1):
            text = render_help(path, width)
            if text not in texts:
                texts.append(text)
            index.append(texts.index(text))
        helps[" ".join(path)] = (tuple(index), tuple(texts))
    return helps


def _formats() -> dict[str, tuple[str, ...]]:
    return {shell: (*_format(shell, "\0", None).split("\0"),) for shell in fast.SHELLS}


def _format(shell: str, value: str, help_: str | None) -> str:
    cls = get_completion_class(shell)
    assert cls is not None  # click knows bash, zsh and fish
    return cls(cli, {}, "banger", "_BANGER_COMPLETE").format_completion(
        CompletionItem(value, help=help_)
    )


def _commands(path: tuple[str, ...], group: click.Group) -> list[tuple[str, ...]]:
    """The group's command completions, each (name, bash line, zsh line, fish line)."""
    ctx = click.Context(group, info_name=path[-1] if path else "banger")
    items = []
    for item in group.shell_complete(ctx, ""):
        if item.type != "plain" or not isinstance(item.value, str):
            raise RuntimeError(f"banger {' '.join(path)}: a completion the table cannot hold")
        lines = (_format(shell, item.value, item.help) for shell in fast.SHELLS)
        items.append((item.value, *lines))
    return items


def _kind(param: click.Parameter) -> str | None:
    """Where ``param``'s values complete from: bangerd's ``/vms``..., "" for nowhere, None for
    anything the fast path leaves to click."""
    custom = param._custom_shell_complete
    if isinstance(custom, NamesCompleter):
        return custom.path
    if custom is None and type(param.type).shell_complete is click.ParamType.shell_complete:
        return ""
    return None


def _leaf(cmd: click.Command) -> tuple[Any, ...]:
    """Its arguments (nargs, kind), its options that take a value (kind) and its flags."""
    arguments = tuple(
        (p.nargs if p.nargs in (1, -1) else 0, _kind(p))
        for p in cmd.params
        if isinstance(p, click.Argument)
    )
    values: dict[str, str | None] = {}
    flags: set[str] = set()
    for p in cmd.params:
        if not isinstance(p, click.Option):
            continue
        if p.is_flag or p.count:
            flags.update(p.opts, p.secondary_opts)
        else:
            values.update(dict.fromkeys(p.opts, _kind(p) if p.nargs == 1 else None))
    return arguments, values, tuple(sorted(flags))  # sorted: the same table every time


def build() -> dict[str, Any]:
    """The whole table, from the click tree as a fresh ``banger`` process has it."""
    settings = cli.context_settings
    if settings.get("terminal_width") is not None:
        raise RuntimeError("a fixed terminal_width: every help has one width, no table needed")
    max_width = int(settings.get("max_content_width") or 80)
    # Every command loaded: the lazy tables' descriptions are the commands' own
    # (a unit test holds them to it), so the help reads the same either way.
    cli.load_all()
    helps = _helps(max_width)
    sources = _sources()
    groups = _groups((), cli)
    return {
        "SOURCES": sources,
        "FINGERPRINT": fast.fingerprint(sources),
        "MAX_WIDTH": max_width,
        "HELP_OPTIONS": tuple(settings.get("help_option_names", ["--help"])),
        "HELP": helps,
        "FORMATS": _formats(),
        "WORDS": {
            " ".join(path): {
                **{name: " ".join((*path, name)) for name in group.commands},
                **{a: " ".join((*path, n)) for a, n in getattr(group, "aliases", {}).items()},
            }
            for path, group in groups
        },
        "COMMANDS": {" ".join(path): _commands(path, group) for path, group in groups},
        "LEAVES": {" ".join(path): _leaf(cmd) for path, cmd in _leaves((), cli)},
    }


def _sources() -> tuple[str, ...]:
    """Every file of banger and click loaded now, the command tree's and its formatting's.

    The fast path uses the table only while each of them is as it was here; a
    command's help read from a constant elsewhere in banger counts too.
    """
    files = {__file__, fast.__file__}
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        path = getattr(module, "__file__", None)
        if top in ("banger", "click") and path and name != fast.TABLE_MODULE:
            files.add(path)
    return tuple(sorted(os.path.abspath(f) for f in files))


def write(directory: Path | None = None) -> Path:
    """Write the table into ``directory`` (``banger/cli``): a module, and a help file per group.

    The help texts stay out of the module: a ``--help`` reads one group's file
    instead of unmarshalling every group's.
    """
    directory = directory or Path(fast.__file__).parent
    table = build()
    helps = directory / fast.HELP_DIR
    helps.mkdir(exist_ok=True)
    files = {}
    for number, (key, (index, texts)) in enumerate(sorted(table.pop("HELP").items())):
        files[key] = (index, f"{number}.txt")
        _replace(helps / f"{number}.txt", "\0".join(texts))
    table["HELP"] = files
    lines = [
        '"""Made by `python -m banger.cli.fastgen` from the click tree; do not edit."""',
        "",
        *(f"{name} = {value!r}" for name, value in table.items()),
        "",
    ]
    target = directory / (fast.TABLE_MODULE.rpartition(".")[2] + ".py")
    if _replace(target, "\n".join(lines)):
        # Compiled now: where Python may not write bytecode (PYTHONDONTWRITEBYTECODE)
        # every `banger --help` would compile it again.
        py_compile.compile(str(target), doraise=True)
    return target


def _replace(target: Path, text: str) -> bool:
    """Write ``text`` to ``target`` unless it holds it already; say whether it wrote."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if target.read_text(encoding="utf-8") == text:
            return False  # as it was, its bytecode still valid
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)  # a `banger` starting meanwhile reads the old file or the new
    return True


if __name__ == "__main__":
    sys.argv[0] = "banger"
    print(write())
