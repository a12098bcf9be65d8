"""HTTP/1.1 over a unix socket, with nothing but the standard library's socket.

The CLI starts for every command, so what it imports is paid on every
command. Measured on this project's machines: httpx costs about 90 ms to
import and ``http.client`` (through ``email.parser`` and ``ssl``) about a
third of that, while the subset bangerd speaks needs neither: one request per connection
(``Connection: close``), a body sized by ``Content-Length`` or sent chunked
(the event and log streams). This module is that subset, and it turns every
socket failure into one of two errors: nobody answered, or the answer was cut
off (the daemon died mid-response).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from io import BufferedReader

_MAX_LINE = 65536


class TransportError(Exception):
    """Nothing answers on the socket (missing, refused, or silent past the timeout)."""


class ConnectionLost(TransportError):
    """The daemon answered, then the connection ended before the answer did."""


class Response:
    """A response whose body is read on demand; close it (or use ``with``) when done."""

    def __init__(self, sock: socket.socket, reader: BufferedReader) -> None:
        self._sock = sock
        self._reader = reader
        self.status, self.headers = _read_head(reader)
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._length = int(length) if length is not None and length.isdigit() else None

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives; raises ConnectionLost if it ends short."""
        try:
            if self._chunked:
                yield from _chunked(self._reader)
            elif self._length is not None:
                yield from _sized(self._reader, self._length)
            else:
                while data := self._reader.read1(_MAX_LINE):
                    yield data
        except TimeoutError as exc:
            raise TransportError("the daemon stopped sending mid-answer") from exc
        except OSError as exc:
            raise ConnectionLost(f"the connection broke mid-answer: {exc}") from exc

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """Newline-delimited records of a streamed body, each without its newline."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending


def request(
    socket_path: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    timeout: float | None,
) -> Response:
    """Send one request and read the response's status and headers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot connect to {socket_path}: {exc.strerror or exc}") from exc
    head = [f"{method} {path} HTTP/1.1", "Host: bangerd", "Connection: close"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        reader = sock.makefile("rb")
    except OSError as exc:
        sock.close()
        raise ConnectionLost(f"the daemon closed the connection: {exc}") from exc
    try:
        return Response(sock, reader)
    except BaseException as exc:
        reader.close()
        sock.close()
        if isinstance(exc, TimeoutError):
            raise TransportError(f"no answer within {timeout or 0:.0f}s") from exc
        if isinstance(exc, OSError):
            raise ConnectionLost(f"the connection broke before an answer: {exc}") from exc
        raise


def _readline(reader: BufferedReader) -> bytes:
    line = reader.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise ConnectionLost("the daemon closed the connection mid-answer")
    return line.rstrip(b"\r\n")


def _read_head(reader: BufferedReader) -> tuple[int, dict[str, str]]:
    status_line = _readline(reader).split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ConnectionLost(f"not an HTTP answer: {b' '.join(status_line)[:80]!r}")
    headers: dict[str, str] = {}
    while line := _readline(reader):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line[1]), headers


def _sized(reader: BufferedReader, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        data = reader.read1(min(left, _MAX_LINE))
        if not data:
            raise ConnectionLost(f"the answer ended {left} of {length} bytes short")
        left -= len(data)
        yield data


def _chunked(reader: BufferedReader) -> Iterator[bytes]:
    while True:
        size_text = _readline(reader).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ConnectionLost(f"a malformed chunk header: {size_text[:20]!r}") from exc
        if size == 0:
            while _readline(reader):  # trailers, then the blank line
                pass
            return
        yield from _sized(reader, size)
        if _readline(reader):
            raise ConnectionLost("a chunk did not end where its header said")
