"""The wire between bangerd and banger's guest agent (``banger-agent``), version 1.

One byte stream carries everything: a virtio-serial port named
``banger.agent`` under QEMU (the host end is a unix socket QEMU listens on),
or a vsock connection under Firecracker (the host end is Firecracker's unix
socket: the host writes ``CONNECT <AGENT_VSOCK_PORT>\\n`` and reads
``OK <port>\\n`` first). The agent's Go source (``guest/agent/``) is the
other half of this file and must agree with every constant here.

Sync. A virtio-serial port outlives the host's connection, so bytes of a
dead daemon's half-written frame may still be queued. The host therefore
starts every connection with ``SYNC``; the agent discards input until it has
read ``SYNC`` (at start, after the host end hung up, and after any framing
error), and then reads frames. Every channel of an earlier connection is
cancelled when a new one syncs: a new daemon owns nothing the old one
started.

A host that reconnects before the agent noticed the hang-up sends its SYNC
where the agent expects a frame; the agent recognises SYNC at a frame
boundary too (its first ten bytes are a header no peer may send) and starts
a new session. Frames of the previous connection may still be in flight
when a host connects: the host ignores every frame until the agent's HELLO
answer. When HELLO gets no answer (the SYNC landed inside a stale partial
frame), the host sends SYNC and HELLO again. The guest kernel drops what
the host sends before the agent has opened its serial port, so at boot the
host repeats SYNC and HELLO (every half second or so) until the first HELLO
answer, then stops: every later request follows the last SYNC it sent.

Frame: ``length:u32 channel:u32 kind:u8 flags:u8`` (big-endian), then
``length`` bytes of payload, at most ``MAX_PAYLOAD``. Channel 0 is the
connection's own (HELLO, PING); every request opens a channel the host
numbers (odd numbers, increasing; never reused in one connection).

Kinds and payloads:

- HELLO (0, both ways, JSON): the host ``{"min": 1, "max": 1, "host": ...}``;
  the agent answers ``{"version": V, "agent": ..., "pid": ..., "boot_id":
  ..., "caps": [...]}`` with the highest version both speak, or ERROR
  ``{"error": ..., "min": ..., "max": ...}`` when there is none (and keeps
  waiting for another HELLO). Nothing else is read before a HELLO succeeds.
- OPEN (host -> agent, JSON): a request ``{"op": NAME, ...}`` (see OPS).
- DATA (both ways): ``stream:u8`` then bytes. Streams: 0 the request's
  input (stdin, a file or tar being written), 1 its output (stdout, a file
  or tar being read; a pty's output), 2 stderr.
- EOF (both ways): ``stream:u8``; that stream ends.
- WINDOW (both ways): ``stream:u8 increment:u32``. Flow control: a sender
  may have at most ``INITIAL_WINDOW`` bytes of a stream's DATA unread by
  the other side; the reader grants more as it consumes them. One slow
  reader therefore never stalls the other channels.
- CONTROL (host -> agent, JSON): ``{"signal": N}`` to the request's process
  group, ``{"resize": [rows, cols]}`` for its pty.
- EVENT (agent -> host, JSON, not final): ``{"started": {"pid": N}}``.
- CLOSE (agent -> host, JSON, final): ``{"ok": true, ...result}`` or
  ``{"ok": false, "error": TEXT, "errno": "ENOENT"}``; the channel is done.
  An exec ends with ``{"ok": true, "exit": N}`` or ``{"ok": true,
  "signal": N, "timed_out": bool}``.
- CANCEL (host -> agent, empty): stop the request (an exec's process group
  gets SIGKILL); the agent still answers CLOSE.
- ERROR (agent -> host, JSON): a protocol error on channel 0, or a request
  the agent cannot parse on its channel (then no CLOSE follows).

Decisions the agent (``guest/agent/*.go``) implements where the above is silent:

- PING is a HELLO sent again after the first succeeded: it is answered like
  the first, so it doubles as a liveness check. Any HELLO is answered.
- An OPEN whose payload is not a JSON object with ``op`` gets ERROR on its
  channel; an op the agent does not know gets CLOSE ``errno: "ENOSYS"``;
  bad fields in a known op get CLOSE ``errno: "EINVAL"``. A request the
  host cancelled closes with ``errno: "ECANCELED"`` (exec: ``signal: 9``).
- The agent's DATA frames carry at most 32 KiB (a virtio-serial write moves
  that much as one buffer); it accepts up to ``DATA_CHUNK`` from the host.
- exec: the environment is ``PATH`` (the usual sbin and bin dirs), ``HOME=/root``,
  ``USER=root``, ``LANG=C.UTF-8`` and, with a pty, ``TERM`` (``term`` or
  xterm-256color), then the request's ``env`` over them; ``argv[0]`` is looked
  up in that PATH. ``cwd`` defaults to /root (/ when missing). Without
  ``stdin: true`` the command's stdin is empty. With a pty the output is one
  stream (1), and EOF on stream 0 types the terminal's end-of-file (^D). The
  exec ends when its process has exited and its output streams are closed:
  a background child holding them keeps it open, as over SSH (after a
  timeout or CANCEL the group is killed and output gets one second more).
  ``timeout`` is in seconds (a float; 0 or absent: none).
- read/write/stat/list/tar take absolute paths. ``write`` without ``mode``
  keeps the mode of the file it replaces (0644 for a new one). ``stat``'s
  ``mode`` holds the permission bits with setuid/setgid/sticky; ``type`` is
  one of file, dir, symlink, fifo, socket, char, block; ``mtime`` is float
  seconds. ``tar_get`` without ``names`` sends the whole ``dir``;
  ``tar_put`` creates ``dir`` when missing and stops at the first refused
  entry (entries before it stay extracted); CLOSE has ``files``.
- identity changes ``eth0``; CLOSE has ``changed`` (the fields applied). A
  new host key is written to /etc/ssh/ssh_host_ed25519_key{,.pub}; a
  running OpenSSH gets SIGHUP, banger's dropbear is restarted with it.
  Newer agents set the network through rtnetlink and broadcast an
  unsolicited ARP for the new address themselves: their CLOSE says
  ``announced: true`` (an older agent's has no ``announced``; the host
  then sends the ARP with busybox) and ``took_ms`` (milliseconds per step).
- entropy's CLOSE has ``bytes`` and ``reseeded`` (the kernel's CRNG now
  draws from the pool: RNDRESEEDCRNG; false before Linux 4.17). ports'
  ``proto`` is "tcp" or "tcp6".
- connect: a TCP connection made by the agent inside the guest, so the host
  reaches servers bound to the guest's loopback (no packet from the bridge
  can). ``host`` defaults to 127.0.0.1 and must be an IP literal that is a
  loopback address (127.0.0.0/8, ::1) or one an interface of the guest holds
  (CLOSE ``errno: "EPERM"`` otherwise): the channel is a way into the guest,
  never a proxy onto its networks. Once connected the agent sends EVENT
  ``{"connected": {"local": ADDR, "remote": ADDR}}``; then stream 0 is what
  the host sends to the server and stream 1 what the server answers, both
  with WINDOW flow control. The host's EOF on stream 0 half-closes the
  connection (shutdown SHUT_WR); the server's end of its output is EOF on
  stream 1. The channel ends when both directions have ended: CLOSE ``{"ok":
  true, "sent": N, "received": M}`` (bytes each way). Nothing listening is
  CLOSE ``errno: "ECONNREFUSED"`` (before any EVENT), no answer within 5 s
  ``ETIMEDOUT``, a reset mid-stream ``ECONNRESET``; CANCEL drops the
  connection (``ECANCELED``). An agent without ``connect`` in its HELLO
  caps is older than this op.
- An agent started with ``--listen unix:PATH`` (tests on a host) refuses
  identity, clock and poweroff with ``errno: "EPERM"``; identity's network
  part (``mac``, ``ip``, ``gateway`` on ``--device``) is taken when the agent
  runs in a network namespace of its own.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

VERSION_MIN = 1
VERSION_MAX = 1
SYNC = b"\x00\x00\x00\x00BANGER-AGENT-SYNC\n"
HEADER = struct.Struct(">IIBB")
MAX_PAYLOAD = 1 << 20
# Per stream and direction; 256 KiB keeps a virtio-serial ring busy without
# letting one channel hold megabytes of the daemon's memory.
INITIAL_WINDOW = 256 << 10
DATA_CHUNK = 64 << 10
AGENT_VSOCK_PORT = 1024
SERIAL_PORT_NAME = "banger.agent"
AGENT_BINARY = "/.banger/bin/banger-agent"

STDIN, STDOUT, STDERR = 0, 1, 2

OPS = {
    # exec {argv, cwd?, env?: {K: V}, stdin: bool, pty?: {rows, cols, term?}, timeout?: s}
    "exec",
    # read {path}: the file on stream 1; CLOSE {size}
    "read",
    # write {path, mode?: int, mkdirs?: bool}: the file on stream 0, renamed into place at EOF
    "write",
    # stat {path, follow?: bool}: CLOSE {stat: {name, type, size, mode, uid, gid, mtime, target?}}
    "stat",
    # list {path}: CLOSE {entries: [stat, ...]}
    "list",
    # tar_get {dir, names: [...]}: a tar on stream 1 (symlinks kept, modes kept)
    "tar_get",
    # tar_put {dir}: a tar (or several in a row) on stream 0, extracted into dir; CLOSE {files}
    "tar_put",
    # identity {hostname?, ip?: "a.b.c.d/n", gateway?, mac?, host_key?: {private, public}}
    "identity",
    # clock {unix_ns}
    "clock",
    # entropy {data: base64}: mixed into the kernel's pool, credited, CRNG reseeded
    "entropy",
    # ports {}: CLOSE {ports: [{proto, addr, port, pid?, process?}]}
    "ports",
    # load {}: CLOSE {loadavg: [1, 5, 15], uptime, mem_total_kib, mem_available_kib, procs}
    "load",
    # boot {wait?: s}: CLOSE {init: "agent"|"systemd"|..., state: "running"|"starting"|...}
    "boot",
    # poweroff {}: CLOSE first, then the guest powers off
    "poweroff",
    # connect {port, host?: "127.0.0.1"}: EVENT {connected}; stream 0 out, stream 1 back;
    # CLOSE {sent, received}
    "connect",
}


class Kind(IntEnum):
    HELLO = 0
    OPEN = 1
    DATA = 2
    EOF = 3
    WINDOW = 4
    CONTROL = 5
    EVENT = 6
    CLOSE = 7
    CANCEL = 8
    ERROR = 9


class ProtocolError(Exception):
    """The other side sent something this version cannot read."""


@dataclass(frozen=True)
class Frame:
    channel: int
    kind: Kind
    payload: bytes = b""

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{self.kind.name} on channel {self.channel}: {exc}") from exc
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.kind.name} on channel {self.channel} is not an object")
        return value

    def stream(self) -> tuple[int, bytes]:
        """(stream, rest) of a DATA, EOF or WINDOW payload."""
        if not self.payload:
            raise ProtocolError(f"{self.kind.name} on channel {self.channel} names no stream")
        return self.payload[0], self.payload[1:]

    def window(self) -> tuple[int, int]:
        stream, rest = self.stream()
        if len(rest) != 4:
            raise ProtocolError(f"WINDOW on channel {self.channel} is {len(rest)} bytes, not 4")
        return stream, int.from_bytes(rest, "big")


def encode(channel: int, kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), channel, kind, 0) + payload


def encode_json(channel: int, kind: Kind, value: Mapping[str, Any]) -> bytes:
    return encode(channel, kind, json.dumps(value, separators=(",", ":")).encode())


def data(channel: int, stream: int, chunk: bytes) -> bytes:
    return encode(channel, Kind.DATA, bytes([stream]) + chunk)


def eof(channel: int, stream: int) -> bytes:
    return encode(channel, Kind.EOF, bytes([stream]))


def window(channel: int, stream: int, increment: int) -> bytes:
    return encode(channel, Kind.WINDOW, bytes([stream]) + increment.to_bytes(4, "big"))


class Decoder:
    """Frames out of a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames: list[Frame] = []
        while len(self._buf) >= HEADER.size:
            length, channel, kind, _flags = HEADER.unpack_from(self._buf)
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"a frame of {length} bytes exceeds {MAX_PAYLOAD}")
            try:
                known = Kind(kind)
            except ValueError:
                raise ProtocolError(f"unknown frame kind {kind}") from None
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append(Frame(channel, known, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)
