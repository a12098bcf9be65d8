"""What every check reads the host through (``Host``), and what it answers (``Check``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from banger import proc
from banger.errors import HostError
from banger.net.upstream import RESOLV_CONF

GIB = 1 << 30
Status = Literal["ok", "info", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    remedy: str = ""


def _version(binary: str) -> str:
    try:
        result = proc.run([binary, "--version"], check=False, timeout=10)
    except HostError:
        return ""
    text = (result.stdout or result.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else ""


def _can_open(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _resolved_domains(bridge: str) -> str:
    """What ``resolvectl domain BRIDGE`` prints (``Link 5 (bg0): ~vm``), or ""."""
    tool = proc.which("resolvectl")
    if tool is None:
        return ""
    try:
        result = proc.run([tool, "domain", bridge], check=False, timeout=10)
    except HostError:
        return ""
    return result.stdout.decode(errors="replace") if result.returncode == 0 else ""


@dataclass(frozen=True)
class Host:
    """Where the checks look; every field can be replaced in tests."""

    dev: Path = Path("/dev")
    sys_module: Path = Path("/sys/module")
    boot: Path = Path("/boot")
    release: str = field(default_factory=lambda: os.uname().release)
    which: Callable[[str], str | None] = proc.which
    version: Callable[[str], str] = _version
    can_open: Callable[[Path], bool] = _can_open
    free_bytes: Callable[[Path], int] = _free_bytes
    resolve_dir: Path = Path("/run/systemd/resolve")
    resolv_conf: Path = RESOLV_CONF
    nsswitch: Path = Path("/etc/nsswitch.conf")
    resolved_domains: Callable[[str], str] = _resolved_domains
