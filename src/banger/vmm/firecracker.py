"""Firecracker driver: launch the VMM (under its jailer when installed), then
configure the VM over its API socket and start it.

Jailed, the root helper runs the jailer (``vmm_launch``) and the VM's files
appear inside the jail under the names it returns; unjailed, this process
starts ``firecracker --api-sock`` itself and passes host paths. Either way
the same request sequence (``fc_config.requests``, pure) follows, and any failure kills
the VMM and removes its jail before the error goes up. Firecracker writes the
guest's serial console to its standard output, which is the VM's console log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from banger import proc
from banger.errors import HostError, VmmError
from banger.guest.proto import AGENT_VSOCK_PORT
from banger.vmm import fc_api, fc_proc
from banger.vmm.base import AgentEndpoint, VmmConfig
from banger.vmm.fc_config import VSOCK_FILE, jail_uid, requests
from banger.vmm.fc_snapshot import (
    LOG_FILE,
    MEMORY_FILE,
    METRICS_FILE,
    VMSTATE_FILE,
    restore_requests,
)
from banger.vmm.qemu import _alive, _remove, _wait_gone

log = logging.getLogger("banger.vmm")

_REMAKE = "this snapshot cannot be restored; take a new one of a running VM"

_API_TIMEOUT = 15.0


class JailHelper(Protocol):
    """What this driver needs of banger-helper: its two VMM verbs."""

    def launch_vmm(
        self,
        *,
        vm_id: str,
        jail_base: str,
        uid: int,
        vcpus: int,
        memory_mib: int,
        files: list[str],
        writable: list[str],
        tap: str,
        log: str,
    ) -> dict[str, Any]: ...

    def kill_vmm(self, vm_id: str, jail_base: str) -> bool: ...


def _jailed_snapshots() -> VmmError:
    return VmmError(
        "snapshots of a jailed Firecracker are not supported yet",
        hint="create the VM with --vmm qemu to snapshot it",
    )


@dataclass(frozen=True)
class _Launched:
    socket: Path
    path: Callable[[Path], str]
    vsock: str
    alive: Callable[[], bool]


class FirecrackerVmm:
    name = "firecracker"
    # The jailer lends the tap to the jail's uid, and Firecracker opens it there.
    takes_tap_fd = False

    def __init__(
        self,
        firecracker: Path | None,
        jailer: Path | None,
        helper: JailHelper | None,
        jail_base: Path,
    ) -> None:
        self.firecracker = firecracker
        self.jailer = jailer if helper is not None else None
        self.helper = helper
        self.jail_base = jail_base
        # Unjailed Firecrackers this daemon started: until one has exec'd, its
        # /proc cmdline is the daemon's, and only this handle finds it.
        self._children: dict[Path, subprocess.Popen[bytes]] = {}

    @property
    def jailed(self) -> bool:
        return self.jailer is not None

    @property
    def _exec_name(self) -> str:
        # The jailer names the jail's directory after the Firecracker binary.
        return self.firecracker.name if self.firecracker else "firecracker"

    def check_host(self) -> None:
        if self.firecracker is None:
            raise HostError(
                "Firecracker is not installed (no firecracker binary on PATH)",
                hint="install Firecracker and its jailer, or create the VM with --vmm qemu;"
                " `banger doctor` says which VMM this host can run",
            )

    def argv(self, config: VmmConfig) -> list[str]:
        """The unjailed command (the jailer's is built by the helper, see helper/jail.py)."""
        binary = str(self.firecracker or "firecracker")
        return [binary, "--api-sock", str(config.control_socket), "--id", config.run_dir.name]

    def launch(self, config: VmmConfig) -> int:
        return self._run(config, lambda launched: requests(config, launched.path, launched.vsock))

    def restore(self, config: VmmConfig, snapshot: Path) -> int:
        """A fresh Firecracker loads the snapshot, takes this VM's disks and tap, resumes."""
        for name in (VMSTATE_FILE, MEMORY_FILE):
            if not (snapshot / name).is_file():
                raise VmmError(
                    f"the snapshot's {name} file {snapshot / name} is missing",
                    hint=_REMAKE,
                )
        if self.jailed:
            raise _jailed_snapshots()
        return self._run(
            config,
            lambda launched: restore_requests(config, snapshot, launched.path, launched.vsock),
        )

    def _run(self, config: VmmConfig, sequence: Callable[[_Launched], list[fc_api.Request]]) -> int:
        if self.pid(config.run_dir) is not None:
            raise VmmError(
                f"VM {config.name!r} already has a Firecracker running", hint="stop it first"
            )
        if config.shares:
            # The daemon refuses --mount for Firecracker VMs; a record that has one anyway.
            raise VmmError(
                f"VM {config.name!r} has shared directories, which Firecracker cannot provide",
                hint="recreate it without --mount; `banger vm cp` copies files in",
            )
        self.check_host()
        config.run_dir.mkdir(parents=True, exist_ok=True)
        _remove(config.pidfile, config.control_socket)
        for name in (LOG_FILE, METRICS_FILE, config.console_log.name):
            (config.run_dir / name).touch()
        log.info(
            "starting Firecracker for %s (%s)", config.name, "jailed" if self.jailed else "unjailed"
        )
        try:
            launched = self._start_jailed(config) if self.jailed else self._start(config)
            client = fc_api.ApiClient(launched.socket, vm=config.name)
            client.wait_ready(_API_TIMEOUT, alive=launched.alive)
            for request in sequence(launched):
                client.send(request)
        except BaseException:
            self.kill(config.run_dir)
            raise
        pid = self.pid(config.run_dir)
        if pid is None:
            raise VmmError(
                f"Firecracker for VM {config.name!r} exited right after InstanceStart",
                hint=f"see {config.console_log} and {config.run_dir / LOG_FILE}",
            )
        return pid

    def _start(self, config: VmmConfig) -> _Launched:
        if len(str(config.control_socket.absolute()).encode()) > fc_api.MAX_SOCKET_PATH:
            raise VmmError(
                f"the API socket path {config.control_socket} is too long for a unix socket",
                hint="set a shorter banger home directory",
            )
        child = proc.spawn(self.argv(config), stdout=config.console_log)
        # Not a daemon of its own (unlike QEMU): reap it whenever it exits.
        threading.Thread(target=child.wait, daemon=True).start()
        self._children[config.run_dir] = child
        config.pidfile.write_text(f"{child.pid}\n")
        return _Launched(
            config.control_socket,
            lambda p: str(p.absolute()),
            str(config.run_dir / VSOCK_FILE),
            # Not pid(): until the child has exec'd, its cmdline is still ours.
            lambda: child.poll() is None,
        )

    def _start_jailed(self, config: VmmConfig) -> _Launched:
        if self.helper is None or config.net is None:
            raise VmmError(f"VM {config.name!r} cannot be jailed without the helper and a tap")
        run = config.run_dir
        readonly = [config.kernel, config.initrd] + [d.path for d in config.disks if d.read_only]
        writable = [d.path for d in config.disks if not d.read_only]
        writable += [run / LOG_FILE, run / METRICS_FILE]
        result = self.helper.launch_vmm(
            vm_id=run.name,
            jail_base=str(self.jail_base),
            uid=jail_uid(run.name),
            vcpus=config.vcpus,
            memory_mib=config.memory_mib,
            files=[str(p.absolute()) for p in readonly],
            writable=[str(p.absolute()) for p in writable],
            tap=config.net.tap,
            log=str(config.console_log.absolute()),
        )
        config.pidfile.write_text(f"{int(result['pid'])}\n")
        mapping: dict[str, str] = dict(result.get("files", {}))
        realpaths = {os.path.realpath(k): v for k, v in mapping.items()}

        def inside(p: Path) -> str:
            try:
                return realpaths[os.path.realpath(p)]
            except KeyError:
                raise VmmError(f"{p} was not placed in the jail of VM {config.name!r}") from None

        alive = lambda: self.pid(run) is not None  # noqa: E731
        return _Launched(Path(str(result["api_socket"])), inside, f"/{VSOCK_FILE}", alive)

    def _jail_dir(self, run_dir: Path) -> Path:
        return self.jail_base / self._exec_name / run_dir.name

    def api_socket(self, run_dir: Path) -> Path:
        if self._jail_dir(run_dir).exists():
            return self._jail_dir(run_dir) / "root" / "api.sock"
        return run_dir / "vmm.sock"

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        # Jailed, Firecracker made the vsock socket inside its chroot.
        jail = self._jail_dir(run_dir)
        base = jail / "root" if jail.exists() else run_dir
        return AgentEndpoint(base / VSOCK_FILE, vsock_port=AGENT_VSOCK_PORT)

    def pid(self, run_dir: Path) -> int | None:
        try:
            pid = int((run_dir / "vmm.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if fc_proc.is_our_firecracker(pid, run_dir.name) else None

    def signal(self, run_dir: Path, sig: signal.Signals) -> bool:
        pid = self.pid(run_dir)
        if pid is None:
            return False
        if self._jail_dir(run_dir).exists():
            # The jail's uid is not ours to signal: the helper ends it.
            self.kill(run_dir)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return True

    def shutdown(self, run_dir: Path) -> bool:
        """Ask the guest to shut down (Ctrl-Alt-Del); False when no VMM answers."""
        if self.pid(run_dir) is None:
            return False
        client = fc_api.ApiClient(self.api_socket(run_dir), vm=run_dir.name)
        try:
            client.send(fc_api.action("SendCtrlAltDel"))
        except VmmError as exc:
            log.info("SendCtrlAltDel to %s: %s", run_dir.name, exc.message)
            return False
        return True

    def _client(self, run_dir: Path, timeout: float = 10.0) -> fc_api.ApiClient:
        if self.pid(run_dir) is None:
            raise VmmError(
                f"no Firecracker runs for the VM in {run_dir}",
                hint="start it with `banger vm start NAME`",
            )
        return fc_api.ApiClient(self.api_socket(run_dir), vm=run_dir.name, timeout=timeout)

    def _set_state(self, run_dir: Path, state: str) -> None:
        body = {"state": state}
        self._client(run_dir).send(fc_api.Request(state.lower(), fc_api.VM_STATE, body))

    def version(self) -> str:
        self.check_host()
        return proc.output([str(self.firecracker), "--version"]).splitlines()[0].strip()

    def pause(self, run_dir: Path) -> None:
        self._set_state(run_dir, "Paused")

    def resume(self, run_dir: Path) -> None:
        self._set_state(run_dir, "Resumed")

    def paused(self, run_dir: Path) -> bool:
        if self.pid(run_dir) is None:
            return False
        try:
            return self._client(run_dir, timeout=2).info().get("state") == "Paused"
        except VmmError:
            return False

    def save(self, run_dir: Path, into: Path) -> None:
        """Pause, then a Full snapshot: the VM state and its memory, as two files."""
        if self._jail_dir(run_dir).exists():
            raise _jailed_snapshots()
        self.pause(run_dir)
        body = {
            "snapshot_type": "Full",
            "snapshot_path": str((into / VMSTATE_FILE).absolute()),
            "mem_file_path": str((into / MEMORY_FILE).absolute()),
        }
        client = self._client(run_dir, timeout=300)
        try:
            client.send(fc_api.Request("snapshot create", fc_api.SNAPSHOT_CREATE, body))
        except BaseException:
            for name in (VMSTATE_FILE, MEMORY_FILE):
                (into / name).unlink(missing_ok=True)
            raise

    def metrics(self, run_dir: Path) -> dict[str, Any] | None:
        """Firecracker's latest metrics line (flushed now), or None."""
        if self.pid(run_dir) is None:
            return None
        client = fc_api.ApiClient(self.api_socket(run_dir), vm=run_dir.name, timeout=2)
        with contextlib.suppress(VmmError):
            client.send(fc_api.action("FlushMetrics"))
        try:
            lines = (run_dir / METRICS_FILE).read_text(errors="replace").strip().splitlines()
            data = json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def running_under(self, root: Path) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            vm_id = fc_proc.firecracker_id(int(entry.name))
            if vm_id is None:
                continue
            jailed = (self.jail_base / self._exec_name / vm_id).exists()
            if (jailed or fc_proc.mentions(int(entry.name), str(root.absolute()))) and _alive(
                int(entry.name)
            ):
                found[root / vm_id] = int(entry.name)
        return found

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        if self._jail_dir(run_dir).exists():
            if self.helper is None:
                raise VmmError(f"VM {run_dir.name} runs jailed but no helper is connected")
            self.helper.kill_vmm(run_dir.name, str(self.jail_base))
        else:
            pid = self.pid(run_dir)
            child = self._children.pop(run_dir, None)
            if pid is None and child is not None and child.poll() is None:
                pid = child.pid
            if pid is None and not run_dir.exists():
                pid = self.running_under(run_dir.parent).get(run_dir)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pid, timeout):
                    raise VmmError(
                        f"Firecracker (pid {pid}) did not exit within {timeout:.0f}s of SIGKILL",
                        hint="the host may be overloaded; try again",
                    )
                log.info("stopped Firecracker pid %d (%s)", pid, run_dir)
        _remove(run_dir / "vmm.pid", run_dir / "vmm.sock", run_dir / VSOCK_FILE)
