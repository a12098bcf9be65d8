"""The contract between the host and banger's initramfs ``/init``.

The host says everything the guest needs on the kernel command line (the
``banger.*`` words) and in the overlay disk's ``seed/`` directory; the disks
are told apart by their virtio serial numbers. ``init.sh`` is the other half
and must agree with the constants here (a unit test checks that it does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from ipaddress import IPv4Address, IPv4Interface

from banger.errors import UserError

# virtio-blk serials (at most 20 bytes); /init finds disks by these.
ROOT_SERIAL = "bgroot"  # the image's ext4 root, read-only, shared by every VM of the image
OVERLAY_SERIAL = "bgoverlay"  # the VM's own ext4: seed/, and upper/ + work/ of the overlay

# Directory on the overlay disk that /init installs into the root on every boot.
SEED_DIR = "seed"
SEED_AUTHORIZED_KEYS = "authorized_keys"
SEED_HOST_KEY = "ssh_host_ed25519_key"
SEED_HOST_KEY_PUB = "ssh_host_ed25519_key.pub"

# Lines /init prints to the console; the host may look for them in the log.
SWITCHING_ROOT = "banger-init: switching root"
FAILURE_PREFIX = "banger-init: "

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def kernel_cmdline(
    *,
    ip: IPv4Interface,
    gateway: IPv4Address,
    dns: IPv4Address | None,
    hostname: str,
    extra: Sequence[str] = (),
) -> str:
    """The guest kernel's command line: console, panic policy and banger's settings.

    ``reboot=t panic=-1`` turn a kernel panic into a reset, which QEMU's
    ``-no-reboot`` turns into an exit, so a broken guest never hangs.
    """
    if not _HOSTNAME_RE.fullmatch(hostname):
        raise UserError(
            f"{hostname!r} cannot be a guest hostname",
            hint="use letters, digits and dashes, at most 63 characters",
        )
    for word in extra:
        if not word or any(c.isspace() for c in word):
            raise UserError(
                f"kernel argument {word!r} is empty or contains whitespace",
                hint="pass each kernel argument as its own word",
            )
    words = [
        "console=ttyS0",
        "reboot=t",
        "panic=-1",
        "net.ifnames=0",
        f"banger.ip={ip.with_prefixlen}",
        f"banger.gw={gateway}",
    ]
    if dns is not None:
        words.append(f"banger.dns={dns}")
    words.append(f"banger.hostname={hostname}")
    words.extend(extra)
    return " ".join(words)


def seed_files(
    authorized_keys: str, host_key_private: bytes, host_key_public: str
) -> dict[str, bytes]:
    """The overlay disk's seed files, keyed by path relative to ``SEED_DIR``.

    A caller writes each to ``staging_dir / SEED_DIR / key`` and runs
    ``mkfs.ext4 -d staging_dir``. /init copies
    them on every boot to ``/root/.ssh/authorized_keys`` and
    ``/etc/ssh/ssh_host_ed25519_key{,.pub}`` with root ownership and strict modes.
    """

    def line(text: str) -> bytes:
        return (text.rstrip("\n") + "\n").encode()

    return {
        SEED_AUTHORIZED_KEYS: line(authorized_keys),
        SEED_HOST_KEY: host_key_private,
        SEED_HOST_KEY_PUB: line(host_key_public),
    }


def init_script() -> bytes:
    """The initramfs ``/init`` (a busybox ``sh`` script shipped with banger)."""
    return resources.files("banger.guest").joinpath("init.sh").read_bytes()
