"""Warm start: a create restores its image's boot snapshot instead of booting.

The first create of an image (with a given key, ``bootkey.py``) boots, waits
for the image's own init to finish booting, and saves a boot snapshot of the
guest: paused, memory and writable disks saved as `vm snapshot create` does,
resumed. Not at the moment the agent first answers: under emulation systemd
boots on for seconds after that, and every VM restored from such a snapshot
would boot on too, its first commands queued behind the rest of the boot
(measured: an exec 0.4-0.7 s instead of 0.15 s). Later
creates with the same key go through the snapshot restore path instead (own
disks, tap, lease, MAC, hostname, host key, clock and entropy). A boot
snapshot is written under a hidden name and renamed into place after its
row: a create never sees half of one, and a restore that fails (a damaged
file, a VMM that refuses it) removes it and boots. Two creates of one key at
once: the first saves, the other boots without saving.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from banger.api.models import BootSnapshot, Snapshot, SnapshotKind, Vm
from banger.config import Settings
from banger.daemon.bootkey import Action, BootKey, Decision, boot_key, decide, why_not_warm
from banger.daemon.operations import Progress
from banger.daemon.runtime import INIT_FINISHED
from banger.daemon.snapshots import Restore, SnapshotService, check_compatible
from banger.daemon.vms import CreateRequest, VmService
from banger.errors import BangerError, Conflict, HelperError, HostError
from banger.store import Store

log = logging.getLogger("banger.daemon")

# Seconds the first create of a key waits for the image's init before saving.
INIT_TIMEOUT = 180.0


def boot_view(snap: Snapshot) -> BootSnapshot:
    """A boot snapshot as `image show` lists it."""
    try:
        key = json.loads(snap.boot_key or "{}")
    except ValueError:
        key = {}
    return BootSnapshot(
        name=snap.name,
        key=key,
        size_bytes=snap.size_bytes,
        created_at=snap.created_at,
        dir=snap.dir,
    )


class WarmStart:
    def __init__(
        self, settings: Settings, store: Store, vms: VmService, snapshots: SnapshotService
    ) -> None:
        self.settings = settings
        self.store = store
        self.vms = vms
        self.snapshots = snapshots
        self._lock = threading.Lock()
        # Keys a create is saving a boot snapshot of right now.
        self._saving: set[str] = set()

    def create(self, req: CreateRequest, progress: Progress) -> Vm:
        """A new VM: restored from its image's boot snapshot where one fits, else booted."""
        vmm = self.vms.runtime.vmm(req.vm)
        why = why_not_warm(
            req, enabled=self.settings.warm_start, jailed=bool(getattr(vmm, "jailed", False))
        )
        if why is not None:
            log.info("%s: cold boot: %s", req.vm.name, why)
            return self.vms.create(req, progress)
        key = boot_key(req, self.settings, self.vms.host, vmm.version())
        with self._lock:
            existing = self.store.boot_snapshots(key.image)
            decision = decide(key, existing, saving=key.digest in self._saving)
            if decision.action == Action.SAVE:
                self._saving.add(key.digest)
        if decision.action == Action.RESTORE and decision.snapshot is not None:
            made = self._restore(req, decision.snapshot, progress)
            return made or self.vms.create(req, progress)
        if decision.action == Action.BOOT:
            return self.vms.create(req, progress)
        try:
            return self._boot_and_save(req, key, decision, progress)
        finally:
            with self._lock:
                self._saving.discard(key.digest)

    # restore

    def _restore(self, req: CreateRequest, snap: Snapshot, progress: Progress) -> Vm | None:
        """The VM restored from ``snap``; None (said once, snapshot removed) when it cannot be."""
        vm = req.vm.model_copy(update={"snapshot": snap.name, "boot_snapshot": True})
        try:
            check_compatible(snap, self.vms)
            made = self.snapshots.restore(
                Restore(snapshot=snap, vm=vm, sources=req.sources), progress
            )
        except (Conflict, HostError, HelperError):
            # Not the snapshot's doing (a name or address taken meanwhile, the
            # host or its helper failing): a boot would meet it too.
            raise
        except (BangerError, OSError) as exc:
            # restore() undid all it made; the VM is booted under the same name instead.
            message = exc.message if isinstance(exc, BangerError) else str(exc)
            progress.info(
                f"image {snap.image}'s boot snapshot could not be restored ({message}):"
                " removing it and booting instead"
            )
            log.warning("%s: boot snapshot %s not restored: %s", vm.name, snap.name, message)
            self.remove(snap)
            return None
        try:
            self.vms.forwards.open_all(made)
        except BaseException:
            self.vms.delete(made.id, progress)
            raise
        return made

    # boot and save

    def _boot_and_save(
        self, req: CreateRequest, key: BootKey, decision: Decision, progress: Progress
    ) -> Vm:
        image = key.image
        if decision.changed:
            progress.info(
                f"image {image}'s boot snapshot was made with another "
                f"{', '.join(decision.changed)}: booting, and saving a new one"
            )
        vm = self.vms.create(req, progress)
        unfinished = None if req.wait_boot else self._wait_init(vm, progress)
        if unfinished is not None:
            progress.info(f"image {image}'s boot snapshot was not saved: {unfinished}")
            log.warning("%s: boot snapshot not saved: %s", vm.name, unfinished)
            return self.vms.show(vm.id)
        try:
            snap = self._save(vm, key, progress)
        except (BangerError, OSError) as exc:
            # The VM itself is fine: only the next create boots too.
            message = exc.message if isinstance(exc, BangerError) else str(exc)
            progress.info(f"image {image}'s boot snapshot was not saved: {message}")
            log.warning("%s: boot snapshot not saved: %s", vm.name, message)
            return self.vms.show(vm.id)
        for name in decision.stale:
            stale = self.store.get_snapshot(name, SnapshotKind.BOOT)
            self.remove(stale)
            progress.info(f"removed {name}, a boot snapshot of image {image} made before")
        log.info("%s: saved %s", vm.name, snap.name)
        return self.vms.show(vm.id)

    def _wait_init(self, vm: Vm, progress: Progress) -> str | None:
        """Until the guest's own init has finished booting; why not, when it did not."""
        try:
            init, state = self.vms.runtime.wait_init(
                vm,
                progress,
                timeout=INIT_TIMEOUT,
                why=" (once: VMs restored from its boot snapshot then start with nothing"
                " left to boot)",
            )
        except BangerError as exc:
            return exc.message
        if state not in INIT_FINISHED:
            return f"its init ({init}) was still {state} after {INIT_TIMEOUT:.0f}s"
        return None

    def _save(self, vm: Vm, key: BootKey, progress: Progress) -> Snapshot:
        boot_dir = self.settings.boot_snapshots_dir(key.image)
        final = boot_dir / key.digest
        partial = boot_dir / f".{key.digest}.{uuid.uuid4().hex[:8]}"
        progress.stage(
            "boot-snapshot",
            f"saving image {key.image}'s boot snapshot, for later creates like this one",
        )
        started = time.monotonic()
        with ExitStack() as undo:
            partial.mkdir(parents=True)
            undo.callback(shutil.rmtree, partial, True)
            with self.vms.locked(vm.name):
                current = self.vms.show(vm.id)
                snap = self.snapshots.save_into(
                    current, key.name, partial, progress, record_dir=final
                )
            snap = snap.model_copy(update={"kind": SnapshotKind.BOOT, "boot_key": key.text})
            # Row first, then the rename: a create that finds the row while the
            # name is still hidden sees this key as being saved and just boots.
            self.store.add_snapshot(snap)
            undo.callback(self.store.delete_snapshot, snap.name)
            shutil.rmtree(final, ignore_errors=True)  # a leftover of a row since removed
            partial.rename(final)
            undo.pop_all()
        took = time.monotonic() - started
        progress.info(
            f"saved image {key.image}'s boot snapshot: {snap.size_bytes >> 20} MiB in"
            f" {took:.1f}s ({vm.name} was paused meanwhile); later creates like this one"
            " restore it (`--cold` boots)"
        )
        return snap

    def remove(self, snap: Snapshot) -> None:
        self.store.delete_snapshot(snap.name)
        shutil.rmtree(Path(snap.dir), ignore_errors=True)
