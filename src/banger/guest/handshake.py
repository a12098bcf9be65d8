"""The start of a link to the agent: Firecracker's CONNECT, SYNC, and HELLO.

A virtio-serial port outlives the host's connection, so the first bytes the
host reads may be the tail of a frame the agent wrote to an earlier one.
The host therefore does not decode from its first byte: it looks for the
agent's HELLO answer (a frame header on channel 0 whose payload is the
answer's JSON) and decodes from the end of it. An agent whose input held a
stale partial frame may have swallowed the SYNC; the host sends SYNC and
HELLO again every ``RESEND`` seconds until one is answered (extra answers
arrive on channel 0 later and are ignored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from banger import __version__
from banger.guest import proto
from banger.guest.channel import AgentGone, AgentVersionError

RESEND = 1.0
_ANSWER_MAX = 16 << 10
# Bytes 4..9 of a header on channel 0 of kind HELLO or ERROR, flags 0.
_MARKERS = tuple(bytes([0, 0, 0, 0, kind, 0]) for kind in (proto.Kind.HELLO, proto.Kind.ERROR))


@dataclass(frozen=True)
class AgentInfo:
    """What the agent said about itself in its HELLO."""

    version: int
    agent: str
    caps: tuple[str, ...]
    boot_id: str
    pid: int

    @classmethod
    def from_hello(cls, body: Mapping[str, Any]) -> AgentInfo:
        caps = body.get("caps") or ()
        return cls(
            version=int(body.get("version", 0)),
            agent=str(body.get("agent", "")),
            caps=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            boot_id=str(body.get("boot_id", "")),
            pid=int(body.get("pid", 0) or 0),
        )


def version_error(theirs_min: object, theirs_max: object) -> AgentVersionError:
    ours = f"{proto.VERSION_MIN}-{proto.VERSION_MAX}"
    theirs = f"{theirs_min}-{theirs_max}"
    older = isinstance(theirs_max, int) and theirs_max < proto.VERSION_MIN
    hint = (
        "the image carries an older agent; pull the image again to inject the current one "
        "(`banger image pull NAME`)"
        if older
        else "this banger is older than the image's agent; upgrade banger (`banger version` "
        "shows the one installed)"
    )
    return AgentVersionError(
        f"the guest agent speaks protocol versions {theirs}, this banger speaks {ours}",
        hint=hint,
    )


async def vsock_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
) -> None:
    """Firecracker's host-initiated vsock: ``CONNECT <port>`` answered by ``OK <n>``."""
    writer.write(f"CONNECT {port}\n".encode())
    await writer.drain()
    line = await reader.readline()
    if not line.startswith(b"OK "):
        said = line.decode(errors="replace").strip() or "the connection was closed"
        raise AgentGone(f"nothing answers on vsock port {port} in the guest yet ({said})")


def find_answer(buf: bytes) -> tuple[dict[str, Any] | None, int]:
    """The agent's answer to HELLO in ``buf`` and the offset after it.

    Without one: None and the offset before which no answer can start
    (the bytes there can be dropped).
    """
    pos = 0
    while True:
        hits = [hit for hit in (buf.find(m, pos + 4) for m in _MARKERS) if hit >= 0]
        if not hits:
            return None, max(0, len(buf) - proto.HEADER.size)
        at = min(hits) - 4
        length = int.from_bytes(buf[at : at + 4], "big")
        end = at + proto.HEADER.size + length
        if length > _ANSWER_MAX:
            pos = at + 1
            continue
        if end > len(buf):
            return None, at
        frame = proto.Frame(0, proto.Kind(buf[at + 8]), buf[at + proto.HEADER.size : end])
        try:
            body = frame.json()
        except proto.ProtocolError:
            pos = at + 1
            continue
        if frame.kind is proto.Kind.HELLO and "version" in body:
            return body, end
        if frame.kind is proto.Kind.ERROR and ("min" in body or "max" in body):
            return body | {"refused": True}, end
        pos = at + 1


def hello_frame() -> bytes:
    hello = {"min": proto.VERSION_MIN, "max": proto.VERSION_MAX, "host": f"bangerd {__version__}"}
    return proto.encode_json(0, proto.Kind.HELLO, hello)


async def hello(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: proto.Decoder
) -> AgentInfo:
    """SYNC and HELLO until answered; ``decoder`` then holds what followed the answer."""
    buf = b""
    while True:
        writer.write(proto.SYNC + hello_frame())
        await writer.drain()
        try:
            async with asyncio.timeout(RESEND):
                while True:
                    chunk = await reader.read(64 << 10)
                    if not chunk:
                        raise AgentGone("the guest agent closed the link before it said hello")
                    answer, offset = find_answer(buf + chunk)
                    buf = (buf + chunk)[offset:]
                    if answer is not None:
                        decoder.feed(buf)  # frames before our first request: nobody's
                        return _accept(answer)
        except TimeoutError:
            continue


def _accept(answer: dict[str, Any]) -> AgentInfo:
    if answer.get("refused"):
        raise version_error(answer.get("min"), answer.get("max"))
    info = AgentInfo.from_hello(answer)
    if not proto.VERSION_MIN <= info.version <= proto.VERSION_MAX:
        raise version_error(info.version, info.version)
    return info
