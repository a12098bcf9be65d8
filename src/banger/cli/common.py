"""What every command shares: settings, the daemon connection, output helpers.

Heavy modules (httpx, rich, pydantic) load inside these functions, so
``--help`` and completion stay fast.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.models import Event, Operation
    from banger.config import Settings


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
    from banger.api.models import EventType

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


def run_operation(conn: Client, op_data: Any, *, quiet: bool = False, label: str = "") -> Operation:
    """Follow an operation to its end, its stages on stderr unless ``quiet``."""
    from banger.api.models import Operation

    op = Operation.model_validate(op_data)
    return conn.follow(op, progress_printer(quiet, label))


quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress lines on stderr; only the result."
)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    if not rows:
        click.echo(empty, err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(table)


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
    as_json: bool,
    headers: Sequence[str],
    row: Callable[[dict[str, Any]], Sequence[Any]],
    *,
    empty: str,
) -> None:
    """GET a list from the daemon; print it as JSON or as a table."""
    with client() as conn:
        records = conn.get(path)
    if as_json:
        print_json(records)
        return
    print_table(headers, [row(r) for r in records], empty=empty)


def show_record(
    path: str,
    as_json: bool,
    fields: Callable[[dict[str, Any], datetime], Sequence[tuple[str, str]]],
) -> None:
    """GET one record from the daemon; print it as JSON or as labelled fields."""
    with client() as conn:
        data = conn.get(path)
    if as_json:
        print_json(data)
        return
    print_fields(fields(data, now()))


def print_catalog(entries: Sequence[Any], as_json: bool) -> None:
    rows = [{"name": e.name, "description": e.description} for e in entries]
    if as_json:
        print_json(rows)
        return
    print_table(
        ["NAME", "DESCRIPTION"], [(r["name"], r["description"]) for r in rows], empty="none"
    )
