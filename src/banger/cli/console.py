"""A serial console's bytes made fit for a pipe or a file.

A guest's console writes for a terminal: colour and cursor escapes, and
``\\r\\n`` line ends (often ``\\r\\r\\n``, the kernel and the tty each adding
one). Piped into ``grep`` or a file those are noise, so ``vm logs`` cleans
them when its stdout is not a terminal. The stream arrives in chunks that may
split an escape sequence anywhere, hence a small state machine that carries
its state from one chunk to the next.
"""

from __future__ import annotations

import re
from enum import Enum, auto

ESC = 0x1B
BEL = 0x07
CR = 0x0D
LF = 0x0A

# Bytes that need a decision: C0 controls other than tab and newline, and DEL.
_SPECIAL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
# Complete CSI sequences, two- and three-byte escapes, and \r...\n line ends.
_WHOLE = re.compile(
    rb"\x1b\[[\x20-\x3f]*[\x40-\x7e]"  # CSI
    rb"|\x1b[\x20-\x2f]+[\x30-\x7e]"  # ESC ( B and the like
    rb"|\x1b[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"  # two bytes, not a string's start
    rb"|\r+\n"
)
# A string sequence (OSC, DCS...) that never ends would swallow the log; past
# this many bytes it is taken as garbage and dropped up to here.
_MAX_STRING = 4096


class _State(Enum):
    TEXT = auto()
    ESCAPE = auto()  # after ESC
    INTERMEDIATE = auto()  # ESC ( B and the like
    CSI = auto()  # ESC [ ... final
    STRING = auto()  # ESC ] ... BEL or ESC \
    STRING_ESCAPE = auto()  # ESC inside a string: maybe its end


class ConsoleCleaner:
    """Feed raw console chunks, get text without escapes and with ``\\n`` line ends.

    A lone ``\\r`` (a line redrawn in place) becomes a line break, so no
    output is lost in a file; ``\\r`` before ``\\n`` goes.
    """

    def __init__(self) -> None:
        self._state = _State.TEXT
        self._pending_cr = False
        self._string_len = 0

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        i, n = 0, len(chunk)
        while i < n:
            if self._state is _State.TEXT and not self._pending_cr:
                match = _SPECIAL.search(chunk, i)
                end = match.start() if match else n
                out += chunk[i:end]
                i = end
                if i == n:
                    break
                # Whole sequences inside the chunk go in one step; only one cut
                # by the chunk's end needs the byte-by-byte machine.
                whole = _WHOLE.match(chunk, i)
                if whole:
                    if whole.group().endswith(b"\n"):
                        out.append(LF)
                    i = whole.end()
                    continue
            self._step(chunk[i], out)
            i += 1
        return bytes(out)

    def flush(self) -> bytes:
        """The end of the stream: a held carriage return becomes a line break."""
        pending, self._pending_cr = self._pending_cr, False
        self._state = _State.TEXT
        return b"\n" if pending else b""

    def _step(self, byte: int, out: bytearray) -> None:
        state = self._state
        if state is _State.TEXT:
            self._text(byte, out)
        elif state is _State.ESCAPE:
            if byte == ord("["):
                self._state = _State.CSI
            elif byte in b"]PX^_":
                self._state, self._string_len = _State.STRING, 0
            elif 0x20 <= byte <= 0x2F:
                self._state = _State.INTERMEDIATE
            else:
                self._end_escape(byte, out)
        elif state is _State.INTERMEDIATE:
            if not 0x20 <= byte <= 0x2F:
                self._end_escape(byte, out)
        elif state is _State.CSI:
            if 0x40 <= byte <= 0x7E:
                self._state = _State.TEXT
            elif not 0x20 <= byte <= 0x3F:
                self._state = _State.TEXT  # not a CSI after all: keep the byte
                self._text(byte, out)
        else:
            self._string(byte, out)

    def _end_escape(self, byte: int, out: bytearray) -> None:
        """A final byte ends the escape; anything else was cut off it and is text.

        systemd shortens long status lines by cutting an escape in two and
        appending an ellipsis (``ESC`` then ``\xe2\x80\xa6``); the UTF-8 must stay whole.
        """
        self._state = _State.TEXT
        if not 0x30 <= byte <= 0x7E:
            self._text(byte, out)

    def _text(self, byte: int, out: bytearray) -> None:
        if byte == CR:
            self._pending_cr = True
            return
        if self._pending_cr:
            self._pending_cr = False
            if byte != LF:
                out.append(LF)
        if byte == ESC:
            self._state = _State.ESCAPE
        elif byte in (LF, 0x09) or not (byte < 0x20 or byte == 0x7F):
            out.append(byte)

    def _string(self, byte: int, out: bytearray) -> None:
        self._string_len += 1
        if byte == BEL or (self._state is _State.STRING_ESCAPE and byte == ord("\\")):
            self._state = _State.TEXT
        elif byte == LF or self._string_len > _MAX_STRING:
            self._state = _State.TEXT  # an unterminated string: resume the text
            if byte == LF:
                out.append(LF)
        else:
            self._state = _State.STRING_ESCAPE if byte == ESC else _State.STRING


def clean(data: bytes) -> bytes:
    """A whole console log, cleaned in one go."""
    cleaner = ConsoleCleaner()
    return cleaner.feed(data) + cleaner.flush()
