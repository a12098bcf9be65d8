"""Where bangerd's socket is, for the common case, without importing banger.config.

A tab that completes a VM name asks bangerd, and ``banger.config`` (with
pathlib, dataclasses, ipaddress and re) costs more to import than the rest
of that tab. When nothing but the environment decides the socket (no config
file, no system install, no setting that ``Settings.validate`` would have to
check), it is found here; otherwise ``socket_path`` says None and the caller
resolves settings in full. ``banger.config`` takes its defaults from here, so
the two agree; a unit test holds them to it.
"""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING: importing typing costs more than this module does.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping

SOCKET_NAME = "bangerd.sock"
# Written by `banger system install`; its presence makes system mode the default.
INSTALL_METADATA = "/etc/banger/install.json"
# The settings that can say where the socket is without a config file.
_PLACES = ("BANGER_RUNTIME_DIR", "BANGER_HOME", "BANGER_CONFIG")


def config_file(environ: Mapping[str, str]) -> str:
    explicit = environ.get("BANGER_CONFIG")
    if explicit:
        return explicit
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "banger", "config.toml")


def default_runtime_dir(environ: Mapping[str, str]) -> str:
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "banger")
    return f"/tmp/banger-{os.getuid()}"


def socket_path(environ: Mapping[str, str]) -> str | None:
    """bangerd's socket in user mode from the environment alone; None when more decides it."""
    others = [k for k, v in environ.items() if k.startswith("BANGER_") and k not in _PLACES and v]
    if others or os.path.isfile(config_file(environ)) or os.path.isfile(INSTALL_METADATA):
        return None
    explicit = environ.get("BANGER_RUNTIME_DIR")
    runtime = os.path.expanduser(explicit) if explicit else default_runtime_dir(environ)
    return os.path.join(runtime, SOCKET_NAME)
