"""Which processes are banger's Firecrackers, read from /proc.

A Firecracker is known by the ``--id`` its jailer (or banger) gave it; pids
are reused, so a stale pidfile is believed only when the id matches.
"""

from __future__ import annotations

from pathlib import Path

from banger.vmm.qemu import _alive


def cmdline(pid: int) -> list[str]:
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def firecracker_id(pid: int) -> str | None:
    """The ``--id`` of a Firecracker process (the jailer passes ``--id=ID``), else None."""
    argv = cmdline(pid)
    # A script's interpreter comes first (a stand-in Firecracker is one).
    if not any("firecracker" in Path(word).name for word in argv[:2]):
        return None
    for index, word in enumerate(argv):
        if word.startswith("--id="):
            return word.removeprefix("--id=")
        if word == "--id" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def mentions(pid: int, text: str) -> bool:
    return any(text in word for word in cmdline(pid))


def is_our_firecracker(pid: int, vm_id: str) -> bool:
    # Pids are reused: a stale pidfile must not make us signal a stranger.
    return firecracker_id(pid) == vm_id and _alive(pid)
