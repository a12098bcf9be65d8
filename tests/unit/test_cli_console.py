"""`vm logs` into a pipe: escapes and carriage returns cleaned, chunk by chunk."""

from __future__ import annotations

import pytest

from banger.cli.console import ConsoleCleaner, clean

# As a Debian guest's serial console writes it (kernel, systemd, a login prompt).
CONSOLE = (
    b"[    0.000000] Linux version 6.1.0\r\r\n"
    b"\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m.\r\n"
    b"\x1b]0;dev: ~\x07root@dev:~# \x1b[?2004hls\r\n"
    b"\x1b(Bcharset\x1b[K\x1bPq#0;2;0;0;0\x1b\\\x1b7saved\x1b8\r\n"
    b"caf\xc3\xa9 \ttab\r\n"
    # systemd ellipsizing a status line cuts an escape after its ESC.
    b"Mounting \x1b[0;1;39mdev-mqueue.mount\x1b\xe2\x80\xa6POSIX Message Queue\r\n"
    b"A start job is running\rA start job is done\r\n"
)
EXPECTED = (
    b"[    0.000000] Linux version 6.1.0\n"
    b"  OK  ] Started ssh.service.\n"
    b"root@dev:~# ls\n"
    b"charsetsaved\n"
    b"caf\xc3\xa9 \ttab\n"
    b"Mounting dev-mqueue.mount\xe2\x80\xa6POSIX Message Queue\n"
    b"A start job is running\nA start job is done\n"
)


def test_whole_log_is_cleaned():
    assert clean(CONSOLE) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_chunks_split_anywhere_give_the_same_text(size):
    cleaner = ConsoleCleaner()
    chunks = [CONSOLE[i : i + size] for i in range(0, len(CONSOLE), size)]
    out = b"".join(cleaner.feed(chunk) for chunk in chunks) + cleaner.flush()
    assert out == EXPECTED


def test_an_escape_split_across_chunks_is_removed():
    cleaner = ConsoleCleaner()
    assert cleaner.feed(b"red: \x1b[3") == b"red: "
    assert cleaner.feed(b"1mhot\x1b") == b"hot"
    assert cleaner.feed(b"[0m\r") == b""
    assert cleaner.feed(b"\n") == b"\n"


def test_a_carriage_return_at_the_end_becomes_a_line_break():
    cleaner = ConsoleCleaner()
    assert cleaner.feed(b"login: \r") == b"login: "
    assert cleaner.flush() == b"\n"


def test_an_unterminated_title_does_not_swallow_the_log():
    assert clean(b"\x1b]0;title without end\nnext line\r\n") == b"\nnext line\n"


def test_plain_text_passes_unchanged():
    text = b"no escapes here\njust lines\n"
    assert clean(text) == text


def test_a_real_console_log_stays_valid_utf8():
    """Escape cut off before a multi-byte character (seen in a Debian guest's boot log)."""
    for chunk in (1, 3, 4096):
        cleaner = ConsoleCleaner()
        raw = b"unit\x1b\xe2\x80\xa6 \x1b(\xc3\xa9 \x1b[1\xc3\xa9\r\n"
        out = b"".join(cleaner.feed(raw[i : i + chunk]) for i in range(0, len(raw), chunk))
        assert (out + cleaner.flush()).decode() == "unit\u2026 \u00e9 \u00e9\n"
