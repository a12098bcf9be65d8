"""The ``banger`` entry point, kept to what deciding costs.

``banger --help``, ``banger GROUP --help`` and a tab are answered by
``banger.cli.fast`` without importing click; everything else runs the click
tree in ``banger.cli.root``. Console scripts import this module, so it
imports nothing at the top.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING: importing typing costs more than the fast path does.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from banger.cli.root import COMMANDS, cli, fail

__all__ = ["COMMANDS", "cli", "fail", "main"]


def main() -> None:
    import os

    from banger.cli import fast

    if fast.answer(sys.argv, os.environ):
        return
    from banger.cli.root import run

    run()


def __getattr__(name: str) -> object:
    # `from banger.cli.main import cli` (tests, tools) still finds the click tree.
    if name in ("COMMANDS", "cli", "fail"):
        from banger.cli import root

        return getattr(root, name)
    raise AttributeError(f"module 'banger.cli.main' has no attribute {name!r}")
