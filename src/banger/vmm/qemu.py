"""QEMU ``-M microvm`` driver: the whole VM is described on the command line.

QEMU daemonizes itself (``-daemonize -pidfile``), so a VM outlives the daemon
that started it; its pidfile, QMP socket and console log live in the VM's
run directory, which is also how a later daemon finds the process again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from banger import proc
from banger.errors import HostError, VmmError
from banger.guest.proto import SERIAL_PORT_NAME
from banger.vmm.base import AGENT_SOCKET, AgentEndpoint, VmmConfig
from banger.vmm.qmp import Qmp

log = logging.getLogger("banger.vmm")

_REMAKE = "this snapshot cannot be restored; take a new one of a running VM"

QEMU_BINARY = "qemu-system-x86_64"
# sun_path is 108 bytes with its terminating NUL.
_MAX_SOCKET_PATH = 107
_LAUNCH_TIMEOUT = 60.0
_TERM_GRACE = 1.0
_QUIT_GRACE = 2.0
# Saving or loading guest memory under TCG runs at a few hundred MB/s here.
_MIGRATE_TIMEOUT = 300.0
MEMORY_FILE = "memory"


def _opt(value: object) -> str:
    """A value inside a QEMU ``key=value,...`` option: commas are doubled."""
    return str(value).replace(",", ",,")


def _path(value: Path) -> str:
    return _opt(value.absolute())


class QemuVmm:
    name = "qemu"
    takes_tap_fd = True

    def __init__(self, binary: str = QEMU_BINARY) -> None:
        self.binary = binary
        self._version: str | None = None

    def argv(self, config: VmmConfig) -> list[str]:
        if config.accel not in ("kvm", "tcg"):
            raise VmmError(f"unknown accelerator {config.accel!r}", hint="use kvm or tcg")
        argv = [
            self.binary,
            "-name", _opt(config.name),
            "-machine", "microvm",
            "-accel", config.accel,
            # "max" gives TCG every feature it can emulate; KVM passes the host's through.
            "-cpu", "host" if config.accel == "kvm" else "max",
            "-smp", str(config.vcpus),
            "-m", f"{config.memory_mib}M",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", _path(config.kernel),
            "-initrd", _path(config.initrd),
            "-append", config.cmdline,
        ]  # fmt: skip
        for index, disk in enumerate(config.disks):
            drive = f"disk{index}"
            spec = f"id={drive},file={_path(disk.path)},if=none,format=raw"
            if disk.read_only:
                spec += ",readonly=on"
            argv += ["-drive", spec]
            argv += ["-device", f"virtio-blk-device,drive={drive},serial={_opt(disk.serial)}"]
        if config.net is not None:
            if config.net.tap_fd is not None:
                netdev = f"tap,id=net0,fd={config.net.tap_fd}"
            else:
                netdev = f"tap,id=net0,ifname={_opt(config.net.tap)},script=no,downscript=no"
            argv += [
                "-netdev", netdev,
                "-device", f"virtio-net-device,netdev=net0,mac={_opt(config.net.mac)}",
            ]  # fmt: skip
        argv += [
            "-chardev", f"file,id=console,path={_path(config.console_log)}",
            "-serial", "chardev:console",
            "-chardev", f"socket,id=qmp,path={_path(config.control_socket)},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            # banger's agent channel: a virtio-serial port whose host end QEMU serves
            # on a unix socket (no vhost here, so not vsock). wait=off: the guest
            # boots whether or not the daemon has connected yet.
            "-device", "virtio-serial-device,max_ports=2",
            "-chardev", f"socket,id=agent,path={_path(config.agent_socket)},server=on,wait=off",
            "-device", f"virtserialport,chardev=agent,name={SERIAL_PORT_NAME}",
            "-daemonize",
            "-pidfile", str(config.pidfile.absolute()),
        ]  # fmt: skip
        return argv

    def check_host(self) -> None:
        if proc.which(self.binary) is None:
            raise HostError(
                f"{self.binary} is not installed",
                hint="install QEMU (Debian: apt-get install qemu-system-x86), then `banger doctor`",
            )

    def launch(self, config: VmmConfig) -> int:
        return self._start(config, [])

    def _start(self, config: VmmConfig, extra: list[str]) -> int:
        if self.pid(config.run_dir) is not None:
            raise VmmError(
                f"VM {config.name!r} already has a QEMU running from {config.run_dir}",
                hint="stop it first",
            )
        for what, sock in (("QMP", config.control_socket), ("agent", config.agent_socket)):
            if len(str(sock.absolute()).encode()) > _MAX_SOCKET_PATH:
                raise VmmError(
                    f"the {what} socket path {sock} is too long for a unix socket",
                    hint="set a shorter banger home directory",
                )
        self.check_host()
        config.run_dir.mkdir(parents=True, exist_ok=True)
        _remove(config.pidfile, config.control_socket, config.agent_socket)
        argv = self.argv(config) + extra
        log.info("starting QEMU for %s (%s)", config.name, config.accel)
        inherit = () if config.net is None or config.net.tap_fd is None else (config.net.tap_fd,)
        result = proc.run(argv, check=False, timeout=_LAUNCH_TIMEOUT, pass_fds=inherit)
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise VmmError(
                f"QEMU failed to start VM {config.name!r}"
                + (": " + " / ".join(tail) if tail else f" (exit code {result.returncode})"),
                hint=f"see {config.console_log} and `banger doctor`",
            )
        pid = self.pid(config.run_dir)
        if pid is None:
            raise VmmError(
                f"QEMU for VM {config.name!r} exited right after starting",
                hint=f"see the guest console in {config.console_log}",
            )
        return pid

    def pid(self, run_dir: Path) -> int | None:
        try:
            pid = int((run_dir / "vmm.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_qemu(pid, run_dir) else None

    def signal(self, run_dir: Path, sig: signal.Signals) -> bool:
        pid = self.pid(run_dir)
        if pid is None:
            return False
        _signal(pid, sig)
        return True

    def shutdown(self, run_dir: Path) -> bool:
        # microvm's ACPI power button needs a handler in the guest; banger asks over SSH.
        return False

    def metrics(self, run_dir: Path) -> dict[str, Any] | None:
        return None

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        return AgentEndpoint(run_dir / AGENT_SOCKET)

    def running_under(self, root: Path) -> dict[Path, int]:
        """Every QEMU whose run directory lies under ``root``, found from /proc.

        Finds VMs even when their directory (and pidfile) is gone.
        """
        found: dict[Path, int] = {}
        prefix = str(root.absolute()).rstrip("/") + "/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "qemu" not in Path(argv[0]).name or "-pidfile" not in argv:
                continue
            pidfile = (
                argv[argv.index("-pidfile") + 1] if argv.index("-pidfile") + 1 < len(argv) else ""
            )
            if pidfile.startswith(prefix) and _alive(int(entry.name)):
                found[Path(pidfile).parent] = int(entry.name)
        return found

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        pid = self.pid(run_dir)
        if pid is None and not run_dir.exists():
            # Its directory is gone (a deleted VM); find the process by its argv.
            pid = self.running_under(run_dir.parent).get(run_dir)
        if pid is not None:
            # QMP quit (or SIGTERM where the socket is gone) lets QEMU close its
            # disk images cleanly; the guest gets no say, which is what "kill"
            # means. SIGKILL if it dawdles.
            if not (self._quit(run_dir) and _wait_gone(pid, min(_QUIT_GRACE, timeout))):
                _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, min(_TERM_GRACE, timeout)):
                _signal(pid, signal.SIGKILL)
                if not _wait_gone(pid, timeout):
                    raise VmmError(
                        f"QEMU (pid {pid}) did not exit within {timeout:.0f}s of SIGKILL",
                        hint="the host may be overloaded; try again",
                    )
            log.info("stopped QEMU pid %d (%s)", pid, run_dir)
        _remove(run_dir / "vmm.pid", run_dir / "vmm.sock", run_dir / AGENT_SOCKET)

    # QMP: the verbs QEMU has for a running VM

    def _qmp(self, run_dir: Path, timeout: float = 10.0) -> Qmp:
        if self.pid(run_dir) is None:
            raise VmmError(
                f"no QEMU runs for the VM in {run_dir}", hint="start it with `banger vm start NAME`"
            )
        return Qmp.connect(run_dir / "vmm.sock", vm=run_dir.name, timeout=timeout)

    def _quit(self, run_dir: Path) -> bool:
        try:
            with Qmp.connect(run_dir / "vmm.sock", vm=run_dir.name, timeout=1.0) as qmp:
                qmp.execute("quit")
        except VmmError as exc:
            # QEMU may close the socket before its answer to quit: that is a yes too.
            return "closed its control socket" in exc.message
        return True

    def pause(self, run_dir: Path) -> None:
        with self._qmp(run_dir) as qmp:
            qmp.execute("stop")

    def resume(self, run_dir: Path) -> None:
        with self._qmp(run_dir) as qmp:
            qmp.execute("cont")
            # The NIC says where it is now: a bridge that learnt its MAC on a
            # fork's port while this guest was paused forwards to it again.
            qmp.execute("announce-self", _ANNOUNCE)

    def version(self) -> str:
        if self._version is None:
            self.check_host()
            self._version = proc.output([self.binary, "--version"]).splitlines()[0].strip()
        return self._version

    def paused(self, run_dir: Path) -> bool:
        if self.pid(run_dir) is None:
            return False
        try:
            with self._qmp(run_dir, timeout=2.0) as qmp:
                return qmp.status() in _PAUSED_STATES
        except VmmError:
            return False

    def save(self, run_dir: Path, into: Path) -> None:
        """Pause, then migrate the guest into ``into/memory`` through a descriptor.

        The file goes to QEMU over QMP (``getfd``), so no shell and no path
        crosses into QEMU's ``exec:`` migration; a failed save removes the file.
        """
        memory = into / MEMORY_FILE
        with self._qmp(run_dir) as qmp:
            qmp.execute("stop")
            fd = os.open(memory, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                qmp.execute("getfd", {"fdname": "snapshot"}, fds=[fd])
            finally:
                os.close(fd)
            try:
                qmp.execute("migrate", {"uri": "fd:snapshot"})
                _wait_migrated(qmp, "query-migrate", _MIGRATE_TIMEOUT)
            except BaseException:
                memory.unlink(missing_ok=True)
                raise

    def restore(self, config: VmmConfig, snapshot: Path) -> int:
        """The same command line waiting for an incoming migration, fed the memory file."""
        memory = snapshot / MEMORY_FILE
        try:
            fd = os.open(memory, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise VmmError(
                f"the snapshot's memory file {memory} cannot be read: {exc.strerror}",
                hint=_REMAKE,
            ) from exc
        pid = self._start(config, ["-incoming", "defer"])
        try:
            with self._qmp(config.run_dir) as qmp:
                try:
                    qmp.execute("getfd", {"fdname": "snapshot"}, fds=[fd])
                finally:
                    os.close(fd)
                qmp.execute("migrate-incoming", {"uri": "fd:snapshot"})
                _wait_incoming(qmp, config, memory)
                qmp.execute("cont")
        except BaseException:
            self.kill(config.run_dir)
            raise
        return pid


_ANNOUNCE = {"initial": 50, "max": 550, "rounds": 3, "step": 100}
_PAUSED_STATES = ("paused", "postmigrate", "prelaunch", "suspended")


def _wait_migrated(qmp: Qmp, query: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = qmp.execute(query)
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise VmmError(
                f"VM {qmp.vm!r}: QEMU could not save its memory ({status}):"
                f" {info.get('error-desc', 'no reason given')}",
                hint="check the free space under banger's home (`banger doctor`)",
            )
        if time.monotonic() >= deadline:
            raise VmmError(f"VM {qmp.vm!r}: saving its memory took over {timeout:.0f}s")
        time.sleep(0.02)


def _wait_incoming(qmp: Qmp, config: VmmConfig, memory: Path) -> None:
    """Until QEMU has loaded the whole stream; a short or foreign file is refused."""
    bad = VmmError(
        f"VM {config.name!r}: QEMU could not load the snapshot's memory file {memory}"
        " (truncated, damaged or from another QEMU)",
        hint=_REMAKE,
    )
    deadline = time.monotonic() + _MIGRATE_TIMEOUT
    while True:
        try:
            status = qmp.status()
            migration = qmp.execute("query-migrate").get("status")
        except VmmError as exc:
            # QEMU exits when an incoming stream ends early or does not parse.
            raise bad from exc
        if migration in ("failed", "cancelled"):
            raise bad
        if status != "inmigrate" and migration == "completed":
            return
        if time.monotonic() >= deadline:
            raise bad
        time.sleep(0.02)


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, Z, ...), or None when it is gone."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may itself contain spaces or parentheses.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _is_our_qemu(pid: int, run_dir: Path) -> bool:
    """Alive, QEMU, and started for this run directory.

    Pids are reused: a stale pidfile must not make us signal a stranger.
    """
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    program = Path(cmdline.split("\0", 1)[0]).name
    return "qemu" in program and str(run_dir.absolute()) in cmdline and _alive(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
