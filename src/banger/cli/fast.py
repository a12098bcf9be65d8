"""``banger --help``, ``banger GROUP --help`` and a tab, answered without importing click.

Importing click costs most of what those invocations cost (four times an
empty interpreter), yet their answers are fixed by the command tree: this
module answers them from a table ``banger.cli.fastgen`` renders with click
itself (every group's help at every width click can choose, every group's
command completions in each shell's format, and which parameters complete
names from bangerd). Whatever it does not fully understand (an option
before the cursor, a quote, an alias in a help request, a command's own
``--help``, a table older than the sources) it leaves to click, which then
answers as it always has. Unit tests compare both, byte for byte.
"""

from __future__ import annotations

import os
import sys

# Not typing.TYPE_CHECKING: importing typing costs more than a whole answer here.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

TABLE_MODULE = "banger.cli._fasttable"
HELP_DIR = "_fasthelp"  # beside this module: one file per group, its texts split by NULs
SHELLS = ("bash", "zsh", "fish")
_MIN_WIDTH = 50
# What shlex (click's split_arg_string) treats as more than a word separator.
_SPECIAL = frozenset("'\"\\")
_BLANKS = frozenset(" \t\r\n")
_HERE = os.path.dirname(os.path.abspath(__file__))


def answer(argv: list[str], environ: Mapping[str, str]) -> bool:
    """Write what click would for this invocation and say True, or change nothing and say False."""
    reply = render(argv, environ)
    if reply is None or sys.stdout is None:
        return False
    try:
        # Straight to the descriptor: nothing left in a buffer to fail again at exit.
        out, view = sys.stdout.fileno(), memoryview(reply)
    except (AttributeError, OSError, ValueError):  # a stdout with no descriptor: click's
        return False
    try:
        while view:
            view = view[os.write(out, view) :]
    except BrokenPipeError:
        # As click does when a reader stops early (`banger --help | head -1`): quietly, 1.
        if not environ.get("_BANGER_COMPLETE"):
            raise SystemExit(1) from None
        raise
    return True


def render(
    argv: list[str], environ: Mapping[str, str], table: Mapping[str, Any] | None = None
) -> bytes | None:
    """The bytes click would write to stdout for ``argv``, or None where click must answer."""
    if not _named_banger(argv):
        return None
    table = table or _table()
    if table is None:
        return None
    instruction = environ.get("_BANGER_COMPLETE")
    if instruction:  # click checks for a completion before it looks at the arguments
        lines = complete(table, instruction, environ)
        return None if lines is None else "\n".join(lines).encode() + b"\n"
    text = help_text(table, argv[1:], environ)
    if text is None:
        return None
    encoding = getattr(sys.stdout, "encoding", None) or ""
    if not text.isascii() and encoding.lower().replace("-", "") != "utf8":
        return None  # click re-wraps such a stream; leave it to click
    return text.encode()


def fingerprint(sources: tuple[str, ...]) -> tuple[tuple[int, int], ...] | None:
    """Size and modification time of each file the table was made from; None if one is gone."""
    try:
        return tuple((st.st_size, st.st_mtime_ns) for st in map(os.stat, sources))
    except OSError:
        return None


def help_text(table: Mapping[str, Any], args: list[str], environ: Mapping[str, str]) -> str | None:
    """The help ``banger ARGS`` prints, when ARGS are group names then a help option."""
    if not args or args[-1] not in table["HELP_OPTIONS"]:
        return None
    rendered = table["HELP"].get(" ".join(args[:-1]))
    if rendered is None or any(a.startswith("-") or not a for a in args[:-1]):
        return None
    index, name = rendered
    position = _width(environ, table["MAX_WIDTH"]) - _MIN_WIDTH
    if not 0 <= position < len(index):
        return None
    try:
        with open(os.path.join(_HERE, HELP_DIR, name), encoding="utf-8") as texts:
            return str(texts.read().split("\0")[index[position]])
    except (OSError, IndexError, UnicodeDecodeError):
        return None  # removed or cut short since the table was made: click's turn


def _width(environ: Mapping[str, str], max_width: int) -> int:
    """The width click's HelpFormatter takes: the terminal's as shutil reports it, bounded."""
    columns = _positive(environ, "COLUMNS")
    if columns <= 0 or _positive(environ, "LINES") <= 0:
        try:
            size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            size = os.terminal_size((80, 24))
        if columns <= 0:
            columns = size.columns or 80
    return max(min(columns, max_width) - 2, _MIN_WIDTH)


def _positive(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return 0


def complete(
    table: Mapping[str, Any], instruction: str, environ: Mapping[str, str]
) -> list[str] | None:
    """The lines click prints for a completion request, or None to leave it to click."""
    shell, _, verb = instruction.partition("_")
    if verb != "complete" or shell not in SHELLS:
        return None
    words = _split(environ.get("COMP_WORDS"))
    if words is None or "COMP_CWORD" not in environ:
        return None
    if shell == "fish":
        incomplete = environ["COMP_CWORD"]
        if incomplete:
            parts = _split(incomplete)
            if not parts:
                return None
            incomplete = parts[0]
        args = words[1:]
        if incomplete and args and args[-1] == incomplete:
            args.pop()
    else:
        try:
            cword = int(environ["COMP_CWORD"])
        except ValueError:
            return None
        args = words[1:cword]
        try:
            incomplete = words[cword]
        except IndexError:
            incomplete = ""
    return _items(table, shell, args, incomplete)


def _split(text: str | None) -> list[str] | None:
    """``text`` split as shlex splits it, or None where shlex would do more than split."""
    if text is None:
        return None
    for char in text:
        if char in _SPECIAL or not (" " <= char <= "~" or char in _BLANKS):
            return None
    return text.split()


def _items(
    table: Mapping[str, Any], shell: str, args: list[str], incomplete: str
) -> list[str] | None:
    if incomplete and not incomplete[0].isalnum():
        return None  # option names and `=` values: click's
    words, path, rest = table["WORDS"], "", list(args)
    while rest and path in words:
        if rest[0].startswith("-") or rest[0] not in words[path]:
            return None
        path = words[path][rest.pop(0)]
    column = 1 + SHELLS.index(shell)
    if path in words:
        return [item[column] for item in table["COMMANDS"][path] if item[0].startswith(incomplete)]
    kind = _leaf_kind(rest, *table["LEAVES"][path])
    if kind is None:
        return None
    if not kind:
        return []
    from banger.cli.names import names_from_daemon

    before, after = table["FORMATS"][shell]
    return [f"{before}{name}{after}" for name in names_from_daemon(str(kind), incomplete)]


def _leaf_kind(
    rest: list[str],
    arguments: list[tuple[int, str | None]],
    values: Mapping[str, str | None],
    flags: tuple[str, ...],
) -> str | None:
    """What the word after ``rest`` completes from ("" for nothing), as click resolves it.

    The option named last, when it takes a value; else the first argument
    still open. None (click's turn) for anything but plain words, known flags
    and known options each followed by a plain value.
    """
    given, at = 0, 0
    while at < len(rest):
        word = rest[at]
        if not word.startswith("-"):
            given, at = given + 1, at + 1
        elif word in flags:
            at += 1
        elif word not in values:
            return None
        elif at == len(rest) - 1:
            return values[word]
        elif rest[at + 1].startswith("-"):
            return None  # click would take it for an option, not for this one's value
        else:
            at += 2
    return _argument_kind(given, arguments)


def _argument_kind(given: int, arguments: list[tuple[int, str | None]]) -> str | None:
    """What the first argument still open after ``given`` words completes ("" for nothing)."""
    for nargs, kind in arguments:
        if nargs == -1:
            return kind
        if nargs != 1:
            return None
        if given == 0:
            return kind
        given -= 1
    return ""


def _named_banger(argv: list[str]) -> bool:
    """Whether click would call this program ``banger`` (help and completion depend on it)."""
    main = sys.modules.get("__main__")
    if getattr(main, "__package__", None) not in (None, ""):
        return False  # `python -m ...`: click names it after the module
    return bool(argv) and os.path.basename(argv[0]) == "banger"


def _table() -> Mapping[str, Any] | None:
    try:
        module = __import__(TABLE_MODULE, fromlist=["FINGERPRINT"])
    except Exception:  # never made (`python -m banger.cli.fastgen` makes it), or damaged
        return None
    table = vars(module)
    made = table.get("FINGERPRINT")
    return table if made is not None and made == fingerprint(table["SOURCES"]) else None
