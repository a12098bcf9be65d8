"""Websockets to bangerd for exec and transfers: a request, streams both ways, a final word.

The daemon's side is ``banger.daemon.routes_guest`` (its docstring is the
protocol). ``websockets`` loads here, on the first connection, never at the
CLI's start-up: it costs about 100 ms to import, more than a command that
does not need it should pay.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from banger.errors import BangerError, DaemonUnavailable, from_dict

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

STDIN, STDOUT, STDERR = 0, 1, 2
# The daemon sends at most one agent DATA frame (64 KiB) per message; room to spare.
MAX_MESSAGE = 4 << 20


class Refused(BangerError):
    """The daemon or the agent would not start the request; ``errno`` when the guest said why."""

    def __init__(self, final: dict[str, Any]) -> None:
        err = from_dict({**final, "message": final.get("error")})
        super().__init__(err.message, hint=err.hint)
        self.code = err.code
        self.exit_code = err.exit_code
        self.errno: str | None = final.get("errno")


def open_socket(
    socket_path: str, path: str, request: dict[str, Any]
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect, send ``request``, and read the daemon's first answer (``started``).

    Raises ``Refused`` when the daemon answers with an error instead, and
    ``DaemonUnavailable`` when nothing answers on the socket.
    """
    from websockets.exceptions import InvalidHandshake, WebSocketException
    from websockets.sync.client import unix_connect

    try:
        ws = unix_connect(
            socket_path,
            f"ws://bangerd{path}",
            compression=None,
            max_size=MAX_MESSAGE,
            open_timeout=10,
            # The daemon is on this host: a ping adds nothing but wake-ups.
            ping_interval=None,
            # A plain connection (not websockets' reconnecting iterator).
            legacy=True,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise DaemonUnavailable(
            f"bangerd is not answering on {socket_path} ({exc})",
            hint="start it with `banger daemon start`",
        ) from exc
    try:
        ws.send(json.dumps(request))
        first = json.loads(ws.recv())
    except (WebSocketException, OSError, ValueError) as exc:
        ws.close()
        raise DaemonUnavailable(
            f"bangerd closed {path} before answering ({exc})",
            hint="see `banger daemon status` and its log",
        ) from exc
    if "error" in first:
        ws.close()
        raise Refused(first)
    return ws, first
