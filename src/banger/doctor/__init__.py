"""``banger doctor``: every host prerequisite, each with a sentence of remedy.

Checks only look: they read /dev, /sys, /boot and the resolver
configuration, look programs up on PATH and ask them their version (or
systemd-resolved its domains). Nothing is created, loaded or changed. Every
host access goes through ``Host`` so tests can point it at a fake tree.

Statuses: ``ok``; ``info``, a fact worth knowing that needs no action (an
optional backend absent, a fallback in use); ``warn``, something the user
should act on; ``fail``, something that stops banger from working.
"""

from __future__ import annotations

import logging

from banger.config import Settings
from banger.doctor.dns import check_dns_forwarding, check_vm_names
from banger.doctor.host import GIB, Check, Host, Status
from banger.doctor.system import (
    check_bridge,
    check_busybox,
    check_device_mapper,
    check_disk,
    check_loop,
    check_sockets,
    check_tool,
    check_tun,
    is_static_elf,
)
from banger.doctor.vmm import (
    check_firecracker,
    check_kvm,
    check_qemu,
    check_vmm_choice,
    kvm_is_pvm,
)

__all__ = ["GIB", "Check", "Host", "Status", "check_vmm_choice", "is_static_elf", "kvm_is_pvm",
           "run_checks"]  # fmt: skip

log = logging.getLogger("banger.doctor")


def run_checks(settings: Settings, host: Host | None = None) -> list[Check]:
    """Run every check, in the order a person would fix them."""
    host = host or Host()
    checks = [
        check_kvm(host),
        check_qemu(host),
        check_tool(host, "qemu-img", "qemu-utils", "warn", "makes copy-on-write disks"),
        *check_firecracker(settings, host),
        check_vmm_choice(settings, host),
        check_tun(host),
        check_bridge(host),
        check_loop(host),
        check_device_mapper(host),
        check_tool(host, "nft", "nftables", "warn", "--nat will not work"),
        check_tool(host, "mkfs.ext4", "e2fsprogs", "fail", "banger cannot make disks"),
        check_tool(host, "debugfs", "e2fsprogs", "warn", "disks made as non-root keep your uid"),
        check_tool(host, "debootstrap", "debootstrap", "warn", "cannot build debian-bookworm"),
        check_busybox(settings),
        check_tool(host, "go", "golang-go", "fail", "banger cannot build its guest agent"),
        check_tool(host, "apt-get", "apt", "warn", "`banger kernel pull` cannot fetch kernels"),
        check_tool(host, "dpkg-deb", "dpkg", "warn", "`banger kernel pull` cannot unpack"),
        check_tool(host, "ssh", "openssh-client", "fail", "`banger vm ssh` cannot connect"),
        check_tool(host, "ssh-keygen", "openssh-client", "fail", "banger cannot make keys"),
        check_disk(settings, host),
        check_sockets(settings),
        check_dns_forwarding(settings, host),
        check_vm_names(settings, host),
    ]
    for check in checks:
        log.debug("doctor %s: %s (%s)", check.name, check.status, check.detail)
    return checks
