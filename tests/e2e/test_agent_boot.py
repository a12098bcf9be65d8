"""Bare images boot with banger's guest agent under QEMU and accept SSH.

The images are made here, as a registry would hand them over: a BusyBox-only
tree, the same with BusyBox's init (the agent as a sidecar), and a Debian
minbase tree with neither systemd nor an SSH server. Each gets the agent, an
ext4, a per-VM overlay with its seed, a tap on a bridge of the test's own,
and boots with banger's kernel and initramfs. Boot-to-SSH times are printed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from banger.guest import agent, boot, ssh
from banger.guest.bundle import build_agent_bundle
from banger.guest.ssh import make_host_key
from banger.image.ext4 import dir_size_bytes, image_size, make_ext4
from banger.image.mirror import debian_mirror
from banger.vmm.accel import host_tsc_khz
from banger.vmm.base import DiskSpec, NetSpec, VmmConfig
from banger.vmm.qemu import QemuVmm
from tests.agent_driver import AgentClient

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("BANGER_AGENT_E2E_HOME", "/var/tmp/banger-agent-e2e"))
BRIDGE = "bgag0"
NETWORK = ipaddress.IPv4Interface("10.98.0.1/24")
BOOT_TIMEOUT = 120.0


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (bridge, taps, debootstrap)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    if not shutil.which("apt-get"):
        return "apt-get is needed to fetch the agent's packages"
    return None


@pytest.fixture(scope="module", autouse=True)
def _host() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def _ip(*argv: str, check: bool = True) -> None:
    subprocess.run(["ip", *argv], check=check, capture_output=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(vmlinuz, initrd): Debian's cloud kernel, with an initramfs of this tree's init.sh."""
    from banger.kernel.debian import fetch_debian_kernel
    from banger.kernel.initramfs import build_initramfs

    kdir = ARTIFACTS / "kernel"
    if not (kdir / "vmlinuz").is_file():
        fetch_debian_kernel(kdir)
    version = (kdir / "version").read_text().strip()
    initrd = tmp_path_factory.mktemp("initrd") / "initramfs.img"
    build_initramfs(kdir / "modules", version, kdir / "busybox", initrd)
    return kdir / "vmlinuz", initrd


@pytest.fixture(scope="module")
def bundle() -> Path:
    return build_agent_bundle(ARTIFACTS / "bundles")


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    _ip("link", "del", BRIDGE, check=False)
    _ip("link", "add", BRIDGE, "type", "bridge")
    try:
        _ip("addr", "add", NETWORK.with_prefixlen, "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        yield BRIDGE
    finally:
        _ip("link", "del", BRIDGE, check=False)


def busybox_tree(dest: Path, bundle: Path, *, with_init: bool = False) -> Path:
    """What ``busybox`` from a registry holds: one static binary and its applets."""
    for d in ("bin", "etc", "root", "tmp", "dev", "proc", "sys"):
        (dest / d).mkdir(parents=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(bundle / "bin" / "busybox", dest / "bin" / "busybox")
    applets = subprocess.run(
        [dest / "bin" / "busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in applets:
        if name != "busybox":
            os.symlink("busybox", dest / "bin" / name)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    if with_init:
        (dest / "sbin").mkdir()
        os.symlink("../bin/busybox", dest / "sbin" / "init")
        (dest / "etc" / "inittab").write_text("::sysinit:/bin/echo banger-e2e: image init ran\n")
    return dest


def debian_tree(dest: Path, *, include: str = "") -> Path:
    """debootstrap minbase (no SSH server; systemd only if included), cached."""
    cached = ARTIFACTS / ("debian-tree" if not include else f"debian-{include}-tree")
    if not cached.is_dir():
        partial = cached.with_name(f".{cached.name}.tmp")
        shutil.rmtree(partial, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        extra = [f"--include={include}"] if include else []
        subprocess.run(
            ["debootstrap", "--variant=minbase", *extra, "bookworm", partial, debian_mirror()],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial.rename(cached)
    subprocess.run(["cp", "-a", cached, dest], check=True)
    return dest


@dataclass
class Guest:
    ip: str
    key: Path
    known_hosts: Path
    console: Path
    pid: int
    host_key: str
    boot_to_ssh: float
    port: AgentPort | None = None

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR",
             f"root@{self.ip}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


@pytest.fixture
def boot_tree(
    kernel: tuple[Path, Path], bridge: str, tmp_path: Path
) -> Iterator[Callable[[Path], Guest]]:
    """Inject the agent into a tree, make its disks and boot it; cleaned up after."""
    vmm = QemuVmm()
    launched: list[tuple[Path, str]] = []

    def start(tree: Path, bundle_dir: Path, n: int, *, serial: bool = False) -> Guest:
        plan = agent.inject_agent(tree, bundle_dir, agent.AgentConfig(cmd=("sh",)))
        rootfs = tmp_path / f"rootfs{n}.ext4"
        make_ext4(tree, rootfs, image_size(dir_size_bytes(tree)))
        key = tmp_path / f"id{n}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        keydir = tmp_path / f"hostkey{n}"
        keydir.mkdir()
        private, public = make_host_key(keydir / "ssh_host_ed25519_key", "agent-e2e")
        from banger.disk.overlay import create_overlay_disk

        overlay = tmp_path / f"overlay{n}.ext4"
        seed = boot.seed_files(key.with_suffix(".pub").read_text(), private, public)
        create_overlay_disk(overlay, 256 << 20, seed)
        ip = str(NETWORK.network[10 + n])
        known_hosts = tmp_path / f"known_hosts{n}"
        known_hosts.write_text(f"{ip} {' '.join(public.split()[:2])}\n")
        tap = f"bgagt{n}"
        _ip("link", "del", tap, check=False)
        _ip("tuntap", "add", tap, "mode", "tap")
        run_dir = tmp_path / f"run{n}"
        launched.append((run_dir, tap))
        _ip("link", "set", tap, "master", bridge)
        _ip("link", "set", tap, "up")
        extra = [f"banger.init={plan.init}"] if plan.init else []
        if khz := host_tsc_khz():
            extra.append(f"tsc_early_khz={khz}")
        cmdline = boot.kernel_cmdline(
            ip=ipaddress.IPv4Interface(f"{ip}/{NETWORK.network.prefixlen}"),
            gateway=NETWORK.ip, dns=NETWORK.ip, hostname=f"agent-e2e-{n}", extra=extra,
        )  # fmt: skip
        config = VmmConfig(
            name=f"agent-e2e-{n}", vcpus=1, memory_mib=256, kernel=kernel[0], initrd=kernel[1],
            cmdline=cmdline,
            disks=(DiskSpec(rootfs, boot.ROOT_SERIAL, read_only=True),
                   DiskSpec(overlay, boot.OVERLAY_SERIAL)),
            net=NetSpec(tap=tap, mac=f"52:54:00:98:00:{n:02x}"), run_dir=run_dir, accel="tcg",
        )  # fmt: skip
        started = time.monotonic()
        if serial:
            pid, ready = _launch_with_agent_port(vmm, config)
        else:
            pid, ready = vmm.launch(config), None
        guest = Guest(ip, key, known_hosts, config.console_log, pid, public, 0.0, ready)
        while time.monotonic() - started < BOOT_TIMEOUT:
            if guest.ssh("true", timeout=10).returncode == 0:
                guest.boot_to_ssh = time.monotonic() - started
                print(f"\n{tree.name}: boot to first SSH command {guest.boot_to_ssh:.1f}s")
                return guest
            if vmm.pid(run_dir) is None:
                break
            time.sleep(0.2)
        console = config.console_log.read_text(errors="replace")[-3000:]
        # Other tests on this host change links and nftables; show what was there.
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        raise AssertionError(
            f"no SSH to {ip} within {BOOT_TIMEOUT:.0f}s; links:\n{links}\nnft tables:\n"
            f"{tables}\nconsole:\n{console}"
        )

    yield start
    for run_dir, tap in launched:
        with contextlib.suppress(Exception):
            vmm.kill(run_dir)
        _ip("link", "del", tap, check=False)


@dataclass
class AgentPort:
    """banger-agent on the VM's virtio-serial port, greeted on a thread from launch on."""

    path: Path
    launched: float
    client: AgentClient | None = None
    hello: dict[str, object] | None = None
    seconds: float | None = None  # from launch to the agent's HELLO

    def greet(self) -> None:
        deadline = self.launched + BOOT_TIMEOUT
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.client = AgentClient(self.path)
        with contextlib.suppress(OSError, TimeoutError):
            self.hello = self.client.start_retrying(deadline - time.monotonic())
        self.seconds = time.monotonic() - self.launched


def _launch_with_agent_port(vmm: QemuVmm, config: VmmConfig) -> tuple[int, AgentPort]:
    """Launch, and greet the agent's port at once: bytes the host sends before
    the agent opens it are dropped, so the greeting repeats until answered."""
    launched = time.monotonic()
    pid = vmm.launch(config)
    port = AgentPort(config.agent_socket, launched)
    threading.Thread(target=port.greet, daemon=True).start()
    return pid, port


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def test_busybox_image_boots_with_the_agent_as_init(boot_tree, bundle: Path, tmp_path: Path):
    tree = busybox_tree(tmp_path / "busybox", bundle)
    assert agent.boot_plan(tree).mode == "init"
    guest = boot_tree(tree, bundle, 1)

    result = guest.ssh("echo ok; cat /proc/1/comm; hostname; id -u; ip -4 addr show eth0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["ok", "agent", "agent-e2e-1", "0"]
    assert f"inet {guest.ip}/24" in result.stdout
    assert agent.READY_LINE in guest.console.read_text(errors="replace")

    # The daemon's own client (asyncssh) gets the exit status and output too.
    run = ssh.run_in_guest(guest.ip, guest.key, guest.host_key, "echo hi; exit 3")
    assert (run.exit_status, run.stdout) == (3, "hi\n")

    # An orphan is reparented to the agent, which must reap it.
    result = guest.ssh(
        "(sleep 0.2 &); sleep 1.5; grep -l '^State:.*Z' /proc/[0-9]*/status || echo none"
    )
    assert result.stdout.strip() == "none", result.stdout

    # busybox's poweroff signals PID 1; the agent powers off and QEMU exits.
    guest.ssh("/.banger/bin/busybox poweroff")
    assert _wait_exit(guest.pid, 30), "QEMU still runs 30s after poweroff"
    assert "banger-agent: powering off" in guest.console.read_text(errors="replace")


def test_an_image_with_no_shell_and_no_passwd_still_answers(
    boot_tree, bundle: Path, tmp_path: Path
):
    """A scratch-like image: /etc and one static program, nothing else."""
    tree = tmp_path / "scratch"
    (tree / "etc").mkdir(parents=True)
    (tree / "app").mkdir()
    shutil.copy2(bundle / "bin" / "busybox", tree / "app" / "busybox")
    guest = boot_tree(tree, bundle, 6)

    result = guest.ssh("echo ok; grep ^root: /etc/passwd; /app/busybox echo ran")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok", "root:x:0:0:root:/root:/.banger/bin/sh", "ran"]


def test_busybox_image_with_its_own_init_gets_a_sidecar(boot_tree, bundle: Path, tmp_path: Path):
    tree = busybox_tree(tmp_path / "busybox-init", bundle, with_init=True)
    plan = agent.boot_plan(tree)
    assert (plan.mode, plan.image_init) == ("sidecar", "/sbin/init")
    guest = boot_tree(tree, bundle, 2)

    result = guest.ssh("echo ok; cat /proc/1/comm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "init"]
    console = guest.console.read_text(errors="replace")
    assert "banger-agent: handing over to /sbin/init" in console
    assert "banger-e2e: image init ran" in console
    # BusyBox's init, not the agent, powers off now.
    guest.ssh(agent.POWEROFF_COMMAND)
    assert _wait_exit(guest.pid, 30), "QEMU still runs 30s after poweroff"


@pytest.mark.slow  # ~56 s; the busybox image with the agent as init covers the mode in make test
def test_debian_without_systemd_or_sshd_boots_and_answers(boot_tree, bundle: Path, tmp_path: Path):
    tree = debian_tree(tmp_path / "debian")
    assert not (tree / "usr" / "sbin" / "sshd").exists()
    assert agent.boot_plan(tree).mode == "init"
    guest = boot_tree(tree, bundle, 3)

    result = guest.ssh("echo ok; cat /etc/os-release; cat /proc/1/comm; env")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok\n")
    assert 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in result.stdout
    # The session runs the image's own programs with its own libc.
    assert "LD_LIBRARY_PATH" not in result.stdout
    run = ssh.run_in_guest(guest.ip, guest.key, guest.host_key, "printf '%s|' a 'b c'")
    assert (run.exit_status, run.stdout) == (0, "a|b c|")
    # A terminal works too (devpts is mounted).
    result = subprocess.run(
        ["ssh", "-tt", "-i", guest.key, "-o", f"UserKnownHostsFile={guest.known_hosts}",
         "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"root@{guest.ip}", "tty"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("/dev/pts/")
    result = guest.ssh("apt-get --version | head -n 1; ls /run/banger")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("apt ")
    # scp (SFTP underneath) works although the image has no sftp-server.
    local = tmp_path / "payload"
    local.write_text("over sftp\n")
    copy = subprocess.run(
        ["scp", "-q", "-i", guest.key, "-o", f"UserKnownHostsFile={guest.known_hosts}",
         "-o", "BatchMode=yes", local, f"root@{guest.ip}:/tmp/payload"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    assert guest.ssh("cat /tmp/payload").stdout == "over sftp\n"

    # The image has no poweroff of its own; the agent's ends the VM.
    assert guest.ssh("command -v poweroff || echo none").stdout.strip() == "none"
    guest.ssh(agent.POWEROFF_COMMAND)
    assert _wait_exit(guest.pid, 30), "QEMU still runs 30s after /.banger/agent poweroff"


@pytest.mark.slow  # ~66 s under emulation; the busybox sidecar case covers the mode in make test
def test_debian_with_systemd_but_no_sshd_gets_a_sidecar(boot_tree, bundle: Path, tmp_path: Path):
    tree = debian_tree(tmp_path / "debian-systemd", include="systemd-sysv")
    plan = agent.boot_plan(tree)
    assert (plan.mode, plan.image_init, plan.has_sshd) == ("sidecar", "/sbin/init", False)
    guest = boot_tree(tree, bundle, 5)

    result = guest.ssh("echo ok; cat /proc/1/comm; hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "systemd", "agent-e2e-5"]
    # systemd owns shutdown now: it stops dropbear with everything else and
    # powers off, and QEMU exits. SSH answers before systemd has finished
    # starting, so the agent's poweroff must work that early too.
    guest.ssh(agent.POWEROFF_COMMAND)
    assert _wait_exit(guest.pid, 60), "QEMU still runs 60s after systemctl poweroff"


def test_the_agent_answers_on_its_virtio_serial_port(boot_tree, bundle: Path, tmp_path: Path):
    tree = busybox_tree(tmp_path / "busybox-port", bundle)
    guest = boot_tree(tree, bundle, 4, serial=True)
    assert guest.port is not None
    deadline = time.monotonic() + 10
    while guest.port.seconds is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert guest.port.hello is not None and guest.port.seconds is not None
    print(f"busybox-port: agent's HELLO on virtio-serial {guest.port.seconds:.1f}s after launch")
    # The channel answers no later than SSH does.
    assert guest.port.seconds <= guest.boot_to_ssh + 0.5
    assert agent.CHANNEL_LINE in guest.console.read_text(errors="replace")
    client = guest.port.client
    assert client is not None
    ch = client.run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (ch.closed, ch.stdout, ch.stderr) == ({"ok": True, "exit": 4}, b"out\n", b"err\n")
    assert client.call("boot") == {"ok": True, "init": "agent", "state": "running"}
    # A new identity over the channel: hostname now, and a host key dropbear
    # serves once banger's init has restarted it.
    private, public = make_host_key(tmp_path / "new_host_key", "renamed")
    result = client.call(
        "identity",
        hostname="renamed",
        host_key={"private": private.decode(), "public": public},
    )
    assert (result["ok"], result["changed"], result["announced"]) == (
        True,
        ["host_key", "hostname"],  # sorted
        False,
    )
    assert set(result["took_ms"]) == {"hostname", "host_key"}, result
    ssh.write_known_hosts(guest.known_hosts, guest.ip, public)
    deadline = time.monotonic() + 20
    answer = guest.ssh("hostname")
    while answer.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        answer = guest.ssh("hostname")
    assert (answer.returncode, answer.stdout) == (0, "renamed\n"), answer.stderr
    # poweroff over the channel: CLOSE first, then the agent as PID 1 ends the VM.
    assert client.call("poweroff") == {"ok": True}
    assert _wait_exit(guest.pid, 30), "QEMU still runs 30s after poweroff over the channel"
