"""Opening a tap for a VMM that may not open /dev/net/tun itself.

On hosts where ``/dev/net/tun`` is 0600 (this project's machines), a tap
owned by the daemon's user is still out of its reach: opening the device
file comes first. The helper opens it as root, attaches the descriptor to
the VM's tap (``TUNSETIFF``) and hands the descriptor over its socket
(``SCM_RIGHTS``); the VMM inherits it (QEMU's ``-netdev tap,fd=N``).
Standard library only: this runs as root.
"""

from __future__ import annotations

import fcntl
import os
import struct

from banger.helper.errors import HostError

TUN_DEVICE = "/dev/net/tun"
# From <linux/if_tun.h>.
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def open_tap(name: str) -> int:
    """A descriptor attached to the existing tap ``name``; the caller closes it."""
    try:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise HostError(
            f"cannot open {TUN_DEVICE}: {exc.strerror}", hint="load the tun module: modprobe tun"
        ) from exc
    request = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as exc:
        os.close(fd)
        raise HostError(f"cannot attach to tap {name}: {exc.strerror}") from exc
    return fd
