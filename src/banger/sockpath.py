"""Where bangerd's socket is, found without importing banger.config.

A tab that completes a VM name asks bangerd, and ``banger.config`` (with
pathlib, dataclasses and typing) costs more to import than the rest of that
tab. The socket is found here from the values ``banger.configvalues`` reads
and checks for ``load_settings()`` too, so the two name the same socket and
fail alike on bad settings; a unit test holds them to it.
"""

from __future__ import annotations

import os

from banger import configvalues

# Not typing.TYPE_CHECKING: importing typing costs more than this module does.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping

SOCKET_NAME = "bangerd.sock"


def locate(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """bangerd's socket as ``load_settings()`` names it, and the state directory in system mode.

    In system mode the socket's directory may belong to whoever owns the state
    directory (``rundir.home_owner``); in user mode that is None. Raises the
    UserError ``load_settings()`` would raise.
    """
    values = configvalues.read(environ)
    configvalues.settle_mode(values)
    configvalues.check(values)
    runtime = values.get("runtime_dir") or configvalues.default_runtime_dir(environ)
    home = None
    if values.get("mode") == "system":
        home = values.get("home") or configvalues.default_home(environ)
    return os.path.join(runtime, SOCKET_NAME), home
