"""Turn a freshly debootstrapped tree into a banger guest root.

Pure file edits on a directory (no chroot, no host commands), so every rule
is testable on a fake tree. The tree is a guest's root: absolute symlinks in
it point into the guest, never follow them on the host.

What a banger guest needs from its image:
- no SSH host keys of its own: banger gives each VM a key it has pinned;
- sshd taking keys only, for root, with that one ed25519 host key;
- an empty fstab: banger's initramfs assembles the root as an overlay;
- no shared identity (machine-id, hostname) and nothing that waits on udev,
  which minbase does not install, or that wakes up to do periodic work.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from banger.errors import HostError

log = logging.getLogger("banger.image")

HOSTNAME_PLACEHOLDER = "banger"

SSHD_CONFIG = """\
# Written by banger. Each VM gets its own host key and the user's public key
# from banger at boot; passwords are never accepted.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

FSTAB = """\
# banger's initramfs mounts the root (the shared image under a per-VM overlay)
# and the work disk itself; nothing to mount from here.
"""

RESOLV_CONF = """\
# banger's initramfs writes the nameserver here at each boot.
"""

HOSTS = """\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

# Units masked in every banger image, and why.
MASKED_UNITS: dict[str, str] = {
    # BindsTo dev-ttyS0.device, which only udev announces: without udev it
    # waits 90 s, then fails and leaves the system "degraded".
    "serial-getty@.service": "waits for a device unit only udev creates",
    # An empty machine-id marks the first boot; this unit would then stop the
    # boot to ask for a locale, a time zone and a root password on the console.
    "systemd-firstboot.service": "prompts on the console at first boot",
    # Periodic work that costs a short-lived VM CPU (much under emulation).
    "apt-daily.timer": "downloads package lists in the background",
    "apt-daily-upgrade.timer": "upgrades packages in the background",
    "apt-daily.service": "downloads package lists in the background",
    "apt-daily-upgrade.service": "upgrades packages in the background",
    "dpkg-db-backup.timer": "daily dpkg database backup",
    "e2scrub_all.timer": "weekly LVM snapshot scrub (no LVM here)",
    "e2scrub_reap.service": "LVM snapshot cleanup at boot (no LVM here)",
    "fstrim.timer": "weekly trim of a disk the host owns",
}

ENABLED_UNITS: dict[str, str] = {
    # target.wants/unit -> unit file (Debian bookworm keeps units in /lib)
    "multi-user.target.wants/ssh.service": "/lib/systemd/system/ssh.service",
    # A VM has no display: stop at multi-user instead of queueing graphical.target.
    "default.target": "/lib/systemd/system/multi-user.target",
}


def customize_tree(tree: Path) -> None:
    """Apply every banger edit to the root filesystem at ``tree``."""
    if not (tree / "etc").is_dir():
        raise HostError(f"{tree} does not look like a root filesystem (no etc/)")
    remove_host_keys(tree)
    write_file(tree, "etc/ssh/sshd_config.d/banger.conf", SSHD_CONFIG, 0o644)
    write_file(tree, "etc/fstab", FSTAB, 0o644)
    write_file(tree, "etc/hostname", HOSTNAME_PLACEHOLDER + "\n", 0o644)
    write_file(tree, "etc/hosts", HOSTS, 0o644)
    # debootstrap copies the build host's resolver, which means nothing in a VM.
    write_file(tree, "etc/resolv.conf", RESOLV_CONF, 0o644)
    # Empty, not absent: systemd makes a fresh id at each VM's first boot.
    write_file(tree, "etc/machine-id", "", 0o444)
    for link, target in ENABLED_UNITS.items():
        symlink(tree, f"etc/systemd/system/{link}", target)
    for unit in MASKED_UNITS:
        symlink(tree, f"etc/systemd/system/{unit}", "/dev/null")
        _drop_wants(tree, unit)
    ssh_dir = guest_path(tree, "root/.ssh")
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    clean_apt(tree)
    log.info("customized %s for banger", tree)


def guest_path(tree: Path, rel: str) -> Path:
    """``tree/rel``, refusing any parent that is a symlink (it would point at the host)."""
    path = tree
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"{rel!r} is not a relative path inside the guest")
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise HostError(f"{path} is a symlink; refusing to write through it")
    return path / parts[-1]


def write_file(tree: Path, rel: str, content: str, mode: int) -> None:
    path = guest_path(tree, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()  # replace a symlink itself, never its target
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, mode)


def symlink(tree: Path, rel: str, target: str) -> None:
    path = guest_path(tree, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    os.symlink(target, path)


def remove_host_keys(tree: Path) -> list[str]:
    ssh = guest_path(tree, "etc/ssh")
    removed = []
    if ssh.is_dir():
        for key in sorted(ssh.glob("ssh_host_*")):
            key.unlink()
            removed.append(key.name)
    return removed


def _drop_wants(tree: Path, unit: str) -> None:
    """Remove ``*.wants/unit`` links, so a masked unit leaves no dangling want."""
    system = tree / "etc/systemd/system"
    if system.is_dir():
        for link in system.glob(f"*.wants/{unit}"):
            link.unlink()


def clean_apt(tree: Path) -> int:
    """Delete downloaded packages and package lists; return the bytes freed."""
    freed = 0
    for rel, pattern in (
        ("var/cache/apt/archives", "*.deb"),
        ("var/cache/apt", "*.bin"),
        ("var/lib/apt/lists", "*"),
    ):
        directory = guest_path(tree, rel)
        if not directory.is_dir():
            continue
        for path in directory.glob(pattern):
            if path.name in ("lock", "partial"):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                continue
            freed += path.lstat().st_size
            path.unlink()
    return freed
