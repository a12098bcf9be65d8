"""``banger.VM``: one disposable microVM, made, used and deleted from Python.

The VM lives in bangerd (started on the first call when none answers, as
the CLI does); this object holds its name and a client. Each long step
(create, delete, fork, snapshot) is a daemon operation followed to its end,
its stages handed to ``on_progress`` as they happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from banger.api.shapes import Event
from banger.errors import BangerError, NotFound
from banger.sdk.commands import Commands
from banger.sdk.files import Files
from banger.sdk.workspace import Workspace

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.shapes import Operation, Snapshot, Vm
    from banger.config import Settings

log = logging.getLogger("banger.sdk")

Progress = Callable[[Event], None]
"""Called with each event of an operation (its stages and notes) as it arrives."""


def _silent(_event: Event) -> None:
    """The default progress callback: nothing is shown."""


def _client(settings: Settings | None) -> Client:
    from banger.api.client import connect
    from banger.config import load_settings

    return connect(settings or load_settings())


class VM:
    """A banger microVM: made by the constructor, deleted by ``kill()`` or by leaving ``with``.

    ```python
    import banger

    with banger.VM(image="debian-bookworm", workspace=".") as vm:
        r = vm.commands.run("pytest -q", timeout=600)
        print(r.exit_code, r.stdout)
        patch = vm.workspace.export().patch
    ```

    Args:
        image: the image to boot (`banger image list`); None: banger's default.
        workspace: a git checkout on this host to copy in (as `banger vm
            workspace prepare`); commands then run in it.
        name: the VM's name; None: the daemon picks one.
        vcpus, memory_mib: its size; None: defaults sized to this host.
        nat: let the VM reach the network beyond this host.
        from_snapshot: restore this snapshot instead of booting an image.
        wait_boot: return once the image's own init has finished booting
            (its services, sshd among them, are up), not as soon as banger's
            agent answers (commands already work then).
        cold: boot even where the image has a boot snapshot this VM could be
            restored from (warm start, the daemon's default).
        on_progress: called with each stage of create, delete, fork and
            snapshot, as `banger vm create` prints them.
        settings: banger's settings; None: read them as the CLI does.

    Raises:
        banger.BangerError: (a subclass of) with the daemon's ``code``,
            ``message`` and ``hint``; a VM whose workspace could not be
            prepared is deleted before the error reaches you.
    """

    def __init__(
        self,
        image: str | None = None,
        workspace: str | Path | None = None,
        *,
        name: str | None = None,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        nat: bool = False,
        from_snapshot: str | None = None,
        wait_boot: bool = False,
        cold: bool = False,
        on_progress: Progress | None = None,
        settings: Settings | None = None,
    ) -> None:
        from banger.api.shapes import VmCreate

        body = VmCreate(
            name=name,
            image=image,
            vcpus=vcpus,
            memory_mib=memory_mib,
            nat=nat,
            from_snapshot=from_snapshot,
            wait_boot=wait_boot,
            cold=cold,
        )
        conn = _client(settings)
        progress = on_progress or _silent
        op = conn.start("POST", "/vms", body)
        try:
            made = conn.follow(op, progress)
        except BaseException:
            _delete_quietly(conn, op.target, progress)
            raise
        self._bind(conn, _vm_of(made), owned=True, progress=progress)
        if workspace is not None:
            try:
                self.workspace.prepare(workspace)
            except BaseException:
                self.kill()
                raise

    @classmethod
    def create(cls, image: str | None = None, workspace: str | Path | None = None, **kw: Any) -> VM:
        """The same as ``VM(...)``, spelt as E2B's ``Sandbox.create()``."""
        return cls(image, workspace, **kw)

    @classmethod
    def connect(
        cls,
        name: str,
        *,
        on_progress: Progress | None = None,
        settings: Settings | None = None,
    ) -> VM:
        """Attach to VM ``name``, which exists already; leaving ``with`` keeps it.

        Raises ``banger.NotFound`` (with a hint) when no VM has that name.
        """
        from banger.api.shapes import Vm

        conn = _client(settings)
        found = conn.get(f"/vms/{name}", Vm.from_json)
        vm = cls.__new__(cls)
        vm._bind(conn, found, owned=False, progress=on_progress or _silent)
        return vm

    def _bind(self, conn: Client, info: Vm, *, owned: bool, progress: Progress) -> None:
        self._conn = conn
        self.name: str = info.name
        """The VM's name, as `banger vm list` shows it."""
        self._info = info
        self._owned = owned
        self._progress = progress
        self._forks: list[VM] = []
        self.commands = Commands(conn, info.name)
        """Run commands in the VM: ``run`` to the end, ``stream`` as output comes."""
        self.files = Files(conn, info.name, self.commands)
        """Read, write and list files in the VM."""
        self.workspace = Workspace(conn, info.name, self.commands)
        """Copy a git checkout in, take its changes out as a patch."""

    @property
    def info(self) -> Vm:
        """The VM's record as the daemon has it now (state, IP, size...)."""
        from banger.api.shapes import Vm

        self._info = self._conn.get(f"/vms/{self.name}", Vm.from_json)
        return self._info

    @property
    def ip(self) -> str:
        """The VM's address on banger's bridge."""
        return self._info.ip

    def fork(self, name: str | None = None, *, keep: bool = False) -> VM:
        """A copy of this VM as it is now, running: memory, disks and processes.

        Made from a snapshot taken for it (`banger vm fork`), so the copy
        starts where this VM is instead of booting. Unless ``keep``, the
        copy is deleted with this VM (when its ``with`` ends or on
        ``kill()``); it can be deleted sooner with its own ``kill()``.
        """
        from banger.api.shapes import VmFork, VmForked

        body = VmFork(count=1, names=[name] if name else None)
        done = self._follow(self._conn.start("POST", f"/vms/{self.name}/fork", body))
        made = VmForked.from_json(done.result or {}).vms[0]
        child = VM.__new__(VM)
        child._bind(self._conn, made, owned=True, progress=self._progress)
        if not keep:
            self._forks.append(child)
        return child

    def snapshot(self, name: str | None = None) -> Snapshot:
        """Save this VM's memory, device state and disks (`banger vm snapshot create`).

        ``banger.VM(from_snapshot=snap.name)`` starts a new VM from it; it
        stays until `banger vm snapshot delete`.
        """
        from banger.api.shapes import Snapshot, SnapshotCreate

        op = self._conn.start("POST", f"/vms/{self.name}/snapshots", SnapshotCreate(name=name))
        return Snapshot.from_json(self._follow(op).result or {})

    def kill(self) -> None:
        """Delete the VM now (and the forks it owns): its disks and its address go too."""
        for child in self._forks:
            _delete_quietly(child._conn, child.name, self._progress)
        self._forks = []
        self._follow(self._conn.start("DELETE", f"/vms/{self.name}"))

    def _follow(self, op: Operation) -> Operation:
        return self._conn.follow(op, self._progress)

    def __enter__(self) -> VM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._owned:
            return
        if exc is None:
            self.kill()
            return
        # The body's error is the one to see; a failed delete is only logged.
        try:
            self.kill()
        except BangerError as err:
            log.warning("deleting VM %s after an error failed: %s", self.name, err.message)

    def __repr__(self) -> str:
        return f"banger.VM(name={self.name!r})"


def _vm_of(op: Operation) -> Vm:
    from banger.api.shapes import Vm

    return Vm.from_json(op.result or {})


def _delete_quietly(conn: Client, name: str, progress: Progress) -> None:
    """Delete VM ``name`` if it exists (a create cut short may have left it half-made)."""
    try:
        conn.follow(conn.start("DELETE", f"/vms/{name}"), progress)
    except NotFound:
        return
    except BangerError as err:
        log.warning("could not delete VM %s: %s (%s)", name, err.message, err.hint or "")
