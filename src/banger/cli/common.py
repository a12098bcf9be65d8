"""What every command shares: settings, the daemon connection, output helpers.

The client and its shapes load inside these functions, so ``--help`` and
completion load nothing but click; no command loads pydantic or rich.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from banger.api.client import Client, Reader
    from banger.api.shapes import Event, Operation
    from banger.config import Settings
    from banger.errors import BangerError

S = TypeVar("S")

# The CLI's spelling of the request fields the daemon may reject, so an error
# names the flag the user typed.
FLAGS = {
    "vcpus": "--vcpus",
    "memory_mib": "--memory",
    "system_overlay_size": "--system-overlay-size",
    "work_disk_size": "--work-disk-size",
    "name": "--name",
    "image": "--image",
    "timeout": "--timeout",
    "signal": "--signal",
    "size": "--size",
    "ports": "-p",
    "mounts": "--mount",
    "forward_ports": "--forward-ports",
}

# What an operation was doing, for "the daemon stopped while ...".
_DOING = {
    "vm.create": "creating VM {}",
    "vm.start": "starting VM {}",
    "vm.stop": "stopping VM {}",
    "vm.restart": "restarting VM {}",
    "vm.kill": "killing VM {}",
    "vm.set": "changing VM {}",
    "vm.delete": "deleting VM {}",
    "vm.prune": "deleting VMs {}",
    "vm.snapshot": "taking a snapshot of VM {}",
    "image.pull": "pulling image {}",
    "image.promote": "promoting a VM to image {}",
    "kernel.pull": "pulling kernel {}",
    "kernel.import": "importing kernel {}",
}
_LOOK = {
    "vm": "then `banger vm show {0}` (a VM left half-made is marked error:"
    " `banger vm delete {0}` removes it, `banger vm start {0}` retries a start)",
    "image": "then `banger image list`: an unfinished pull registers nothing, so pull again",
    "kernel": "then `banger kernel list`: an unfinished pull registers nothing, so pull again",
}


def absolute(path: str | None) -> str | None:
    """A path as the daemon needs it: absolute (it runs elsewhere, in another directory)."""
    from pathlib import Path

    return str(Path(path).resolve()) if path else None


def process_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for process ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def settings() -> Settings:
    from banger.config import load_settings

    return load_settings()


@contextmanager
def client(*, autostart: bool = True) -> Iterator[Client]:
    from banger.api.client import connect

    conn = connect(settings(), autostart=autostart)
    try:
        yield conn
    finally:
        conn.close()


def progress_printer(quiet: bool = False, label: str = "") -> Callable[[Event], None]:
    """Print an operation's stages to stderr, one line each, with elapsed time.

    ``label`` names the VM (or image...) in each line, for commands that work
    through several in a row.
    """
    from banger.api.shapes import EventType

    start = time.monotonic()
    prefix = f"{label}: " if label else ""

    def show(event: Event) -> None:
        if quiet or event.type in (EventType.DONE, EventType.FAILED):
            return
        elapsed = time.monotonic() - start
        if event.type == EventType.STAGE:
            text = f"[{elapsed:5.1f}s] {prefix}{event.stage}" + (
                f": {event.message}" if event.message else ""
            )
        else:
            text = f"         {prefix}{event.message}"
        click.echo(text, err=True)

    return show


def run_operation(
    conn: Client, op: Operation, *, quiet: bool = False, label: str = ""
) -> Operation:
    """Follow ``op`` to its end, its stages on stderr unless ``quiet``."""
    from banger.errors import DaemonUnavailable

    try:
        return conn.follow(op, progress_printer(quiet, label))
    except DaemonUnavailable as exc:  # cut off mid-stream, or gone before it began
        doing = _DOING.get(op.kind, op.kind + " {}").format(op.target)
        look = _LOOK.get(op.kind.split(".")[0], "").format(op.target)
        raise DaemonUnavailable(
            f"the daemon stopped while {doing}",
            hint="`banger daemon start` brings it back; it reconciles what was left"
            f" (running VMs keep running), {look}",
        ) from exc


quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress lines on stderr; only the result."
)


def flag_error(exc: BangerError) -> tuple[str, str | None]:
    """An error's message and hint, with a rejected request field named by its flag.

    The daemon names the field as its wire spelling (``memory_mib``); the user
    typed ``--memory``.
    """
    message, hint = exc.message, exc.hint
    flag = FLAGS.get(exc.field or "")
    if exc.field and flag:
        message = message.replace(exc.field, flag)
        hint = hint.replace(exc.field, flag) if hint else hint
    return message, hint


def print_json(data: Any) -> None:
    """JSON for programs: a model, a list of models, or plain data."""
    click.echo(json.dumps(jsonable(data), indent=2, sort_keys=True))


def jsonable(data: Any) -> Any:
    if isinstance(data, list):
        return [jsonable(item) for item in data]
    dump = getattr(data, "to_json", None)
    return dump() if dump is not None else data


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    """Aligned columns, two spaces apart; plain text so scripts can cut and awk it.

    Hand-rolled rather than rich's table: rich cost more to import than the
    rest of `banger vm list` together, for columns that are all short.
    """
    if not rows:
        click.echo(empty, err=True)
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    bold = sys.stdout.isatty()
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    if bold:
        lines[0] = f"\033[1m{lines[0]}\033[0m"
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    click.echo("\n".join(lines))


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {value}")


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for programs instead of text for people."
)


def now() -> datetime:
    return datetime.now(UTC)


def list_records(
    path: str,
    read: Reader[S],
    as_json: bool,
    headers: Sequence[str],
    row: Callable[[S], Sequence[Any]],
    *,
    empty: str,
) -> None:
    """GET a list from the daemon, each record read by ``read``; print JSON or a table."""
    with client() as conn:
        records = conn.get_list(path, read)
    if as_json:
        print_json(records)
        return
    print_table(headers, [row(r) for r in records], empty=empty)


def show_record(
    path: str,
    read: Reader[Any],
    as_json: bool,
    fields: Callable[[dict[str, Any], datetime], Sequence[tuple[str, str]]],
) -> None:
    """GET one record from the daemon; print it as JSON or as labelled fields for people."""
    with client() as conn:
        record = conn.get(path, read)
    if as_json:
        print_json(record)
        return
    print_fields(fields(record.to_json(), now()))


def print_catalog(path: str, as_json: bool) -> None:
    """The names `image pull` or `kernel pull` know, as the daemon lists them."""
    from banger.api.shapes import CatalogEntry

    list_records(
        path,
        CatalogEntry.from_json,
        as_json,
        ["NAME", "DESCRIPTION"],
        lambda e: (e.name, e.description),
        empty="none",
    )
