"""`banger vm cp`: files and directories between the host and a guest, as `docker cp` does.

``SRC`` and ``DEST`` are host paths or ``NAME:PATH``. An existing directory
as DEST receives SRC inside it; otherwise DEST is SRC's new name and its
parent must exist. The copy lands in a temporary directory beside DEST and
is renamed into place, so a failed copy leaves nothing half-written.
Modes travel with the tar stream; files belong to whoever receives them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from banger import proc
from banger.errors import HostError, NotFound, UserError
from banger.workspace.channel import GuestChannel, capture

_VM_PATH = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):(.*)$")

_PROBE = (
    'if [ -d "$1" ]; then echo dir; elif [ -e "$1" ] || [ -L "$1" ]; then echo file;'
    ' elif [ -d "$(dirname -- "$1")" ]; then echo parent; else echo missing; fi'
)
_MKTEMP = 'exec mktemp -d "$1/.banger-cp.XXXXXX"'
_PLACE = 'set -e; mv -f -- "$1/$2" "$3"; rmdir -- "$1"'


@dataclass(frozen=True)
class Spec:
    vm: str | None
    path: str


def parse(spec: str) -> Spec:
    match = _VM_PATH.match(spec)
    if match and not spec.startswith(("/", ".")):
        return Spec(vm=match.group(1), path=match.group(2) or ".")
    return Spec(vm=None, path=spec)


def _probe(channel: GuestChannel, path: str) -> str:
    code, out, err = capture(channel, ["sh", "-c", _PROBE, "banger", path])
    if code != 0:
        raise HostError(f"cannot look at {path} in the guest: {err or f'exit {code}'}")
    return out.decode().strip()


def _where(kind: str, dest: str, leaf: str, vm: str) -> tuple[str, str]:
    """(the directory the copy lands beside, the name it gets there)."""
    if kind == "dir":
        return dest, leaf
    if kind in ("parent", "file"):  # a new name, or an existing file replaced (docker cp)
        return os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
    where = f"in VM {vm}" if vm else "on the host"
    raise UserError(
        f"no directory {os.path.dirname(dest.rstrip('/')) or '/'} {where} to copy into",
        hint=f"create it first, e.g. `banger vm exec {vm or 'NAME'} -- mkdir -p"
        f" {os.path.dirname(dest.rstrip('/'))}`"
        if vm
        else "create it first with mkdir -p",
    )


def to_guest(channel: GuestChannel, src: Path, dest: str, vm: str) -> str:
    """Copy host ``src`` to ``dest`` in the guest; the guest path it now has."""
    if not (src.exists() or src.is_symlink()):
        raise UserError(f"no such file or directory on the host: {src}", hint="check the path")
    leaf = src.resolve().name if src.name in ("", ".", "..") else src.name
    parent, name = _where(_probe(channel, dest), dest, leaf, vm)
    code, out, err = capture(channel, ["sh", "-c", _MKTEMP, "banger", parent])
    if code != 0:
        raise HostError(f"cannot write in {parent} in VM {vm}: {err or f'exit {code}'}")
    staging = out.decode().strip()
    guest = channel.put_tar(staging, subprocess.PIPE)
    assert guest.stdin is not None
    producer = proc.popen(
        ["tar", "-c", "-f", "-", "-C", str(src.parent.resolve()), "--", src.resolve().name],
        stdout=guest.stdin,
    )
    guest.stdin.close()
    ok = producer.wait() == 0 and guest.wait() == 0
    final = f"{parent.rstrip('/')}/{name}"
    if ok:
        code, _, err = capture(
            channel, ["sh", "-c", _PLACE, "banger", staging, src.resolve().name, final]
        )
        ok = code == 0
    if not ok:
        capture(channel, ["rm", "-rf", "--", staging])
        raise HostError(f"copying {src} into VM {vm} failed", hint="nothing was left behind")
    return final


def from_guest(channel: GuestChannel, src: str, dest: Path, vm: str) -> Path:
    """Copy guest ``src`` to host ``dest``; the host path it now has."""
    if _probe(channel, src) not in ("dir", "file"):
        raise NotFound(
            f"no such file or directory in VM {vm}: {src}",
            hint=f"look with `banger vm exec {vm} -- ls -la {os.path.dirname(src) or '/'}`",
        )
    clean = src.rstrip("/") or "/"
    leaf = os.path.basename(clean) or "."
    kind = "dir" if dest.is_dir() else "parent" if dest.parent.is_dir() else "missing"
    parent, name = _where(kind, str(dest), leaf, "")
    staging = Path(tempfile.mkdtemp(prefix=".banger-cp.", dir=parent))
    try:
        sink = proc.popen(
            ["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", str(staging)],
            stdin=subprocess.PIPE,
        )
        assert sink.stdin is not None
        guest = channel.get_tar(os.path.dirname(clean) or "/", [leaf], sink.stdin)
        sink.stdin.close()
        if guest.wait() != 0 or sink.wait() != 0:
            raise HostError(f"copying {src} out of VM {vm} failed", hint="nothing was left behind")
        final = Path(parent) / name
        os.replace(staging / leaf, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
