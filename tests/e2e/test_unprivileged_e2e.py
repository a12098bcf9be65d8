"""bangerd as an ordinary user, banger-helper the only root part: create, ssh, stop, delete.

A test user is made with ``useradd`` (and removed after). It runs the CLI and
so its own bangerd, from a venv it can read, with its home, runtime
directory, bridge and subnet; root runs only banger-helper, for that uid.
/dev/net/tun is root's here, so the VM's tap reaches QEMU as a descriptor
the helper passes over its socket. The root session's image and kernel are
copied in and registered, so nothing is built twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, BIN, BRIDGE, DNS_PORT, SUBNET, Banger

pytestmark = pytest.mark.e2e

USER = "bgunprivf"
REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "bin" / "uv"
# Next to the session's own network: its own bridge, range and DNS port.
U_BRIDGE = (BRIDGE + "u")[:15]
U_SUBNET = str(ipaddress.IPv4Network(SUBNET).network_address + 256) + "/24"
U_DNS_PORT = str(int(DNS_PORT) + 1000)


@dataclass
class User:
    uid: int
    gid: int
    base: Path
    env: dict[str, str]
    bin: Path

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "banger"), *args],
            env=self.env,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd=self.base / "home",
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def ok(self, *args: str, timeout: float = 600) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"banger {' '.join(args)}: {result.stderr}"
        return result.stdout


def _user_venv(base: Path) -> Path:
    """A venv of this checkout on the system Python (the dev venv's Python is under /root)."""
    venv = base / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run(
            [str(UV), "venv", "--python", "/usr/bin/python3", str(venv)], check=True, env=_uv_env()
        )
    subprocess.run(
        [str(UV), "pip", "install", "--python", str(venv / "bin" / "python"), "--reinstall-package",
         "banger", "--compile-bytecode", str(REPO)],
        check=True, env=_uv_env(), capture_output=True,
    )  # fmt: skip
    return venv / "bin"


def _uv_env() -> dict[str, str]:
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def _own(path: Path, uid: int, gid: int, mode: int) -> Path:
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def _kill_under(needle: str) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(entry.name), signal.SIGKILL)


def _copy_artifacts(base: Path, uid: int, gid: int) -> tuple[Path, Path, Path]:
    kernel_dir = next((ARTIFACTS / "kernels").iterdir())
    (base / "import").mkdir()
    seed = _own(base / "import", uid, gid, 0o700)
    kernel = shutil.copy(kernel_dir / "vmlinuz", seed / "vmlinuz")
    # The newest initramfs: the one the session's daemon built for today's /init.
    newest = max(kernel_dir.glob("initramfs*.img"), key=lambda p: p.stat().st_mtime)
    initrd = shutil.copy(newest, seed / "initramfs.img")
    rootfs = seed / "rootfs.ext4"
    subprocess.run(
        ["cp", "--sparse=always", str(ARTIFACTS / "images/debian-bookworm/rootfs.ext4"), rootfs],
        check=True,
    )
    for path in (kernel, initrd, rootfs):
        _own(Path(path), uid, gid, 0o600)
    return Path(kernel), Path(initrd), rootfs


@pytest.fixture(scope="module")
def user(image: str, banger_env: Banger) -> Iterator[User]:
    if not UV.exists() or shutil.which("useradd") is None:
        pytest.skip("needs uv (make venv) and useradd")
    subprocess.run(["userdel", USER], capture_output=True, check=False)
    subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    entry = pwd.getpwnam(USER)
    uid, gid = entry.pw_uid, entry.pw_gid
    base = ARTIFACTS / "unpriv"
    shutil.rmtree(base / "home", ignore_errors=True)
    shutil.rmtree(base / "import", ignore_errors=True)
    base.mkdir(mode=0o755, exist_ok=True)
    bin_dir = _user_venv(base)
    (base / "home").mkdir()
    home = _own(base / "home", uid, gid, 0o700)
    # Short: the VMs' QMP sockets live under the home, the daemon's here.
    run_dir = Path(f"/tmp/bgu-{uid}")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    _own(run_dir, uid, gid, 0o700)
    helper_dir = base / "helper"
    shutil.rmtree(helper_dir, ignore_errors=True)
    helper_dir.mkdir(mode=0o755)
    sock = helper_dir / "helper.sock"
    helper_log = (base / "helper.log").open("w")
    helper = subprocess.Popen(
        [str(BIN / "banger-helper"), "--socket", str(sock), "--owner-uid", str(uid),
         "--allowed-dir", str(home), "--state-dir", str(helper_dir / "state")],
        stderr=helper_log,
    )  # fmt: skip
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "BANGER_HOME": str(home / "banger"),
        "BANGER_RUNTIME_DIR": str(run_dir),
        "BANGER_HELPER_SOCKET": str(sock),
        "BANGER_BRIDGE": U_BRIDGE,
        "BANGER_SUBNET": U_SUBNET,
        "BANGER_DNS_PORT": U_DNS_PORT,
        "BANGER_CONFIG": str(home / "no-config.toml"),
    }
    person = User(uid=uid, gid=gid, base=base, env=env, bin=bin_dir)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert helper.poll() is None and time.monotonic() < deadline, "the helper died"
            time.sleep(0.05)
        kernel, initrd, rootfs = _copy_artifacts(base, uid, gid)
        person.ok("kernel", "import", "k", "--kernel", str(kernel), "--initrd", str(initrd), "-q")
        person.ok("image", "register", "img", str(rootfs), "--kernel-ref", "k")
        yield person
    finally:
        person.run("daemon", "stop")
        _kill_under(str(run_dir))
        _kill_under(str(home))
        helper.send_signal(signal.SIGTERM)
        helper.wait(10)
        helper_log.close()
        subprocess.run(["ip", "link", "del", U_BRIDGE], capture_output=True, check=False)
        subprocess.run(["userdel", USER], capture_output=True, check=False)
        shutil.rmtree(str(run_dir), ignore_errors=True)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _pids(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


@pytest.mark.slow  # ~35 s: a second daemon and helper for another user
def test_create_ssh_stop_delete_with_an_unprivileged_daemon(user: User) -> None:
    user.ok("vm", "create", "--name", "u1", "--image", "img", "-q", timeout=300)
    vm = json.loads(user.ok("vm", "show", "u1", "--json"))
    # The daemon and the VMM run as the user; only the helper is root.
    daemons = _pids(str(user.bin / "bangerd"))
    assert daemons and all(_uid_of(pid) == user.uid for pid in daemons)
    qemus = [p for p in _pids(vm["dir"]) if "qemu" in Path(f"/proc/{p}/exe").resolve().name]
    assert qemus and all(_uid_of(pid) == user.uid for pid in qemus)
    # Root in the guest, whoever runs bangerd on the host.
    assert user.ok("vm", "ssh", "u1", "--", "id", "-u").strip() == "0"
    user.ok("vm", "stop", "u1", timeout=120)
    assert json.loads(user.ok("vm", "show", "u1", "--json"))["state"] == "stopped"
    user.ok("vm", "delete", "u1", timeout=120)
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True).stdout)
    assert vm["tap"] not in {link["ifname"] for link in links}
