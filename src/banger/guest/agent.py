"""banger's guest agent in an image: injection, and how the image boots.

Every pulled image gets ``/.banger/`` (the bundle from ``guest.bundle`` plus
the agent script and its config); nothing else in the image is touched, so
the flattened tree still matches the OCI image entry for entry outside that
one directory. What the agent must do depends on the image:

- no usable ``/sbin/init`` (plain ``debian``, ``busybox``): the agent is PID 1
  (mode ``init``), runs dropbear and reaps orphans until poweroff;
- an init but no enabled SSH server: the agent starts dropbear, then execs
  the image's init (mode ``sidecar``);
- an init and an SSH server (the default Debian image): the agent starts
  only its host channel, then execs the image's init (mode ``channel``);
  with a bundle that has no ``banger-agent`` it stays out of the boot path
  (mode ``none``).

In every mode but ``none`` the first thing the agent starts is
``banger-agent`` (``proto.AGENT_BINARY``), which speaks ``guest.proto`` to
the host and prints ``CHANNEL_LINE`` on the console once it serves.
``BootPlan.channel`` (recorded as ``"channel"`` in image.json and in the
image's config) is the newest protocol version the image's agent speaks, 0
for none, so the daemon knows whether to expect it.

The image pipeline records ``BootPlan.init`` as the image's ``init``; the
VM plan turns it into ``banger.init=...`` on the kernel command line.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from banger.errors import HostError
from banger.guest import proto

AGENT_DIR = ".banger"  # in the image's root
AGENT_PATH = f"/{AGENT_DIR}/agent"
AGENT_CONF = "agent.conf"
IMAGE_JSON = "image.json"
BUNDLE_MANIFEST = "manifest.json"
# Lines the agent prints on the console; the host may wait for them.
READY_LINE = "banger-agent: ready"
# banger-agent prints this once it serves the host channel.
CHANNEL_LINE = "banger-agent: channel up"
LINE_PREFIX = "banger-agent: "
# Run over SSH to end the VM gracefully, whatever init runs: the agent, systemd
# (even before its control socket is up) or the image's own.
POWEROFF_COMMAND = f"{AGENT_PATH} poweroff"
# The virtio-serial port banger-agent serves when QEMU provides one.
SERIAL_PORT_NAME = proto.SERIAL_PORT_NAME
# Where the bundle keeps banger-agent, relative to the bundle's directory.
AGENT_BINARY_IN_BUNDLE = proto.AGENT_BINARY.removeprefix(f"/{AGENT_DIR}/")

_SSH_UNITS = ("ssh.service", "sshd.service", "ssh.socket", "dropbear.service")
_SSH_BINARIES = ("usr/sbin/sshd", "sbin/sshd", "usr/sbin/dropbear", "usr/bin/dropbear")
_SSH_NAMES = ("ssh", "sshd", "dropbear")

Mode = Literal["init", "sidecar", "channel", "none"]


@dataclass(frozen=True)
class AgentConfig:
    """What the OCI image config says about running the image, recorded as is."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # KEY=value
    workdir: str = ""
    user: str = ""

    @classmethod
    def from_oci(cls, blob: Mapping[str, object] | None) -> AgentConfig:
        """From an OCI image config blob, or from its inner ``config`` object."""
        if not blob:
            return cls()
        inner = blob.get("config", blob)
        if not isinstance(inner, Mapping):
            return cls()

        def strings(key: str) -> tuple[str, ...]:
            value = inner.get(key)
            if isinstance(value, Sequence) and not isinstance(value, str):
                return tuple(str(v) for v in value)
            return ()

        workdir, user = inner.get("WorkingDir"), inner.get("User")
        return cls(
            entrypoint=strings("Entrypoint"),
            cmd=strings("Cmd"),
            env=strings("Env"),
            workdir=workdir if isinstance(workdir, str) else "",
            user=user if isinstance(user, str) else "",
        )


@dataclass(frozen=True)
class BootPlan:
    mode: Mode
    image_init: str | None  # the image's own usable init, e.g. /sbin/init
    has_sshd: bool
    # The newest guest.proto version the image's banger-agent speaks; 0: no agent.
    channel: int = 0
    # The source key of the banger-agent put in (``agentbin.source_key``); "" if unknown.
    agent_build: str = ""

    @property
    def init(self) -> str | None:
        """What to pass as ``banger.init=``; None keeps the image's /sbin/init."""
        return None if self.mode == "none" else AGENT_PATH


def resolve_in_tree(tree: Path, path: str) -> Path | None:
    """``path`` inside the guest tree, following symlinks as the guest would
    (an absolute target means the tree's root, ``..`` stops at it); None when
    it does not exist or loops. Nothing outside ``tree`` is ever looked at."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current[:-1]
            continue
        candidate = tree.joinpath(*current, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        if not candidate.exists():
            return None
        current.append(part)
    return tree.joinpath(*current)


def _executable_file(path: Path | None) -> bool:
    if path is None:
        return False
    st = path.lstat()
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def image_init(tree: Path) -> str | None:
    """The image's own init when it can run the VM: ``/sbin/init``, or None.

    BusyBox's init without an ``/etc/inittab`` only spawns shells on terminals
    a VM lacks, so such an image counts as having none.
    """
    resolved = resolve_in_tree(tree, "sbin/init")
    if not _executable_file(resolved):
        return None
    assert resolved is not None
    # BusyBox is a few MB; a bigger init is something else and is not read.
    small = resolved.stat().st_size < 16 << 20
    is_busybox = resolved.name == "busybox" or (small and b"BusyBox v" in resolved.read_bytes())
    if is_busybox and _tree_text(tree, "etc/inittab") is None:
        return None
    return "/sbin/init"


def _tree_dir(tree: Path, rel: str) -> Path | None:
    """``rel`` as a directory inside the tree (symlinks resolved within it), or None."""
    path = resolve_in_tree(tree, rel)
    return path if path is not None and path.is_dir() else None


def _tree_text(tree: Path, rel: str) -> str | None:
    path = resolve_in_tree(tree, rel)
    if path is None or not path.is_file():
        return None
    return path.read_text(errors="replace")


def has_sshd(tree: Path, init: str | None) -> bool:
    """True when the image's own init will start an SSH server."""
    if init is None:
        return False
    if not any(_executable_file(resolve_in_tree(tree, b)) for b in _SSH_BINARIES):
        return False
    systemd = _tree_dir(tree, "etc/systemd/system")
    if systemd is not None:
        for wants in systemd.iterdir():
            if not wants.name.endswith(".wants") or wants.is_symlink() or not wants.is_dir():
                continue
            if any(os.path.lexists(wants / unit) for unit in _SSH_UNITS):
                return True
    for rel in ("etc/rc2.d", "etc/rc3.d", "etc/runlevels/default"):
        directory = _tree_dir(tree, rel)
        if directory is not None and any(_is_ssh_name(p.name) for p in directory.iterdir()):
            return True
    inittab = _tree_text(tree, "etc/inittab")
    return inittab is not None and any(name in inittab for name in _SSH_NAMES)


def _is_ssh_name(name: str) -> bool:
    # rc.d links are S<NN><name>; OpenRC runlevels hold the plain name.
    return name.lstrip("S0123456789") in _SSH_NAMES or name in _SSH_NAMES


def boot_plan(tree: Path, channel: int = proto.VERSION_MAX) -> BootPlan:
    """How the image boots with an agent that speaks ``channel`` (0: no banger-agent)."""
    init = image_init(tree)
    sshd = has_sshd(tree, init)
    if init is None:
        return BootPlan("init", None, sshd, channel)
    if not sshd:
        return BootPlan("sidecar", init, sshd, channel)
    return BootPlan("channel" if channel else "none", init, sshd, channel)


def agent_init(tree: Path) -> str | None:
    """The ``init`` to record for the image: the agent, or None for its own."""
    return boot_plan(tree).init


def needs_agent_init(tree: Path) -> bool:
    return agent_init(tree) is not None


def agent_script() -> bytes:
    return resources.files("banger.guest").joinpath("agent.sh").read_bytes()


def agent_conf(plan: BootPlan) -> str:
    """The shell settings ``agent.sh`` sources at boot."""
    mode = plan.mode if plan.mode in ("init", "channel") else "sidecar"
    return (
        "# Written by banger when the image was made; read by /.banger/agent at boot.\n"
        f"BANGER_AGENT_MODE={mode}\n"
        f"BANGER_IMAGE_INIT={shlex.quote(plan.image_init or '/sbin/init')}\n"
    )


def inject_agent(tree: Path, bundle: Path, config: AgentConfig) -> BootPlan:
    """Copy the agent into ``tree/.banger`` and write its config; return the boot plan.

    Whatever the image itself had at ``/.banger`` is replaced (a symlink there
    is removed, never followed). Run as root, or under fakeroot, so the files
    end up owned by root in the guest.
    """
    if not (bundle / BUNDLE_MANIFEST).is_file():
        raise HostError(
            f"{bundle} is not a guest agent bundle (no {BUNDLE_MANIFEST})",
            hint="build it with banger.guest.bundle.build_agent_bundle",
        )
    if not tree.is_dir() or tree.is_symlink():
        raise HostError(f"{tree} is not an image tree")
    channel = proto.VERSION_MAX if (bundle / AGENT_BINARY_IN_BUNDLE).is_file() else 0
    plan = replace(boot_plan(tree, channel), agent_build=_agent_build(bundle) if channel else "")
    target = tree / AGENT_DIR
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    shutil.copytree(bundle, target, symlinks=True)
    os.chmod(target, 0o755)  # noqa: S103 - the guest's programs live here
    _write(target / "agent", agent_script(), 0o755)
    _write(target / AGENT_CONF, agent_conf(plan).encode(), 0o644)
    record = {"agent": {"mode": plan.mode, "image_init": plan.image_init,
                        "has_sshd": plan.has_sshd}, "channel": plan.channel,
              "agent_build": plan.agent_build,
              "image": asdict(config)}  # fmt: skip
    _write(target / IMAGE_JSON, (json.dumps(record, indent=2) + "\n").encode(), 0o644)
    if os.geteuid() == 0:
        for path in [target, *target.rglob("*")]:
            os.lchown(path, 0, 0)
    return plan


def _agent_build(bundle: Path) -> str:
    try:
        manifest = json.loads((bundle / BUNDLE_MANIFEST).read_text())
    except (OSError, ValueError):
        return ""
    build = manifest.get("agent") if isinstance(manifest, dict) else None
    return build if isinstance(build, str) else ""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
