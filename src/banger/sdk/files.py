"""``vm.files``: read, write and list files in the VM.

Reads and writes are one websocket each to the daemon's
``/vms/NAME/files/ws``, which relays to banger's guest agent: the file moves
as it is, in pieces, with nothing run in the guest. Listing a directory runs
a few lines of the guest's ``sh`` (the agent has no listing of its own).
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from banger.errors import BangerError, DaemonUnavailable, NotFound, from_dict

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.sdk.commands import Commands

CHUNK = 64 << 10
STDIN, STDOUT = 0, 1

# One entry per line, NUL-terminated: its type letter, a tab, its name. POSIX sh
# only, so any image's /bin/sh lists (no GNU find needed).
_LIST = r"""dir=$1
[ -d "$dir" ] || { echo "$dir: no such directory" >&2; exit 2; }
for f in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  if [ -L "$f" ]; then t=l; elif [ -d "$f" ]; then t=d; else t=f; fi
  printf '%s\t%s\0' "$t" "${f##*/}"
done
"""
_TYPES: dict[str, Literal["file", "dir", "symlink"]] = {"f": "file", "d": "dir", "l": "symlink"}


@dataclass(frozen=True)
class EntryInfo:
    """One entry of a directory listing."""

    name: str
    type: Literal["file", "dir", "symlink"]
    path: str


class Files:
    """Files in one VM, as root."""

    def __init__(self, conn: Client, vm: str, commands: Commands) -> None:
        self._conn = conn
        self._vm = vm
        self._commands = commands

    def read(self, path: str) -> str:
        """The file at ``path`` in the guest, as text (UTF-8; bad bytes as U+FFFD)."""
        return self.read_bytes(path).decode(errors="replace")

    def read_bytes(self, path: str) -> bytes:
        """The file at ``path`` in the guest, byte for byte."""
        data, _ = self._transfer({"op": "read", "path": path}, None)
        return data

    def write(self, path: str, data: str | bytes, *, mode: int | None = None) -> None:
        """Write ``data`` to ``path`` in the guest, making missing parent directories.

        The file is replaced whole: the guest sees the old content or the
        new one, never half. ``mode`` sets its permission bits (e.g. 0o755).
        """
        raw = data.encode() if isinstance(data, str) else data
        request: dict[str, Any] = {"op": "write", "path": path, "mkdirs": True}
        if mode is not None:
            request["mode"] = mode
        self._transfer(request, raw)

    def list(self, path: str) -> builtins.list[EntryInfo]:
        """The entries of directory ``path`` in the guest (hidden ones too), sorted by name."""
        r = self._commands.run(["sh", "-c", _LIST, "sh", path], cwd="/")
        if r.exit_code != 0:
            raise NotFound(
                r.stderr.strip().removeprefix("banger: ") or f"cannot list {path} in {self._vm}",
                hint=f"look with `banger vm exec {self._vm} -- ls -la {path}`",
            )
        entries = []
        for record in filter(None, r.stdout.split("\0")):
            kind, _, name = record.partition("\t")
            full = path.rstrip("/") + "/" + name
            entries.append(EntryInfo(name=name, type=_TYPES.get(kind, "file"), path=full))
        return sorted(entries, key=lambda e: e.name)

    def _transfer(
        self, request: dict[str, Any], data: bytes | None
    ) -> tuple[bytes, dict[str, Any]]:
        """One file through /files/ws: ``data`` in (when given), its output and last word out."""
        from websockets.exceptions import WebSocketException

        from banger.api.stream import Refused, open_socket

        try:
            socket = str(self._conn.settings.socket)
            ws, _ = open_socket(socket, f"/vms/{self._vm}/files/ws", request)
        except Refused as exc:
            raise _typed(exc) from exc
        out: list[bytes] = []
        final: dict[str, Any] = {}
        try:
            if data is not None:
                for start in range(0, len(data), CHUNK):
                    ws.send(bytes([STDIN]) + data[start : start + CHUNK])
                ws.send(json.dumps({"eof": 0}))
            for message in ws:
                if isinstance(message, bytes):
                    if message[:1] == bytes([STDOUT]):
                        out.append(message[1:])
                else:
                    final = json.loads(message)
        except (WebSocketException, OSError) as exc:
            raise DaemonUnavailable(
                f"bangerd stopped answering during {request['op']} of {request['path']} ({exc})",
                hint="see `banger daemon status`; its log says why",
            ) from exc
        finally:
            ws.close()
        if "error" in final:
            raise from_dict({**final, "message": final["error"]})
        if not final:
            raise DaemonUnavailable(
                f"bangerd ended the {request['op']} of {request['path']} without a result",
                hint="see the daemon's log (`banger daemon status` says where)",
            )
        return b"".join(out), final


def _typed(exc: BangerError) -> BangerError:
    """A refusal as the error of its code (NotFound, UserError...), for ``except`` to catch."""
    return from_dict({"code": exc.code, "message": exc.message, "hint": exc.hint})
