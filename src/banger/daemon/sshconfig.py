"""banger's ssh_config: `ssh NAME.vm` (and scp, rsync, an editor's remote mode) from anywhere.

Each VM's directory holds its own `Host NAME.vm` block, written when the VM
is made and removed with the directory, so the user's `~/.ssh/config` needs
one `Include` line (a glob over those files) that never changes and never
goes stale. The blocks carry what `banger vm ssh` passes on its command
line: banger's key, the VM's address and its pinned host key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from banger.api.models import SshConfig, Vm
from banger.daemon.plan import host_key_alias, vm_paths
from banger.store import Store

log = logging.getLogger("banger.daemon")


def render_block(vm: Vm, user_key: Path) -> str:
    """One VM's `Host` block; every option a user's own `Host *` might otherwise set."""
    paths = vm_paths(vm)
    return "\n".join(
        [
            f"# banger VM {vm.name} (written by bangerd; removed with the VM)",
            f"Host {vm.name}.vm",
            f"  HostName {vm.ip}",
            "  User root",
            f"  IdentityFile {user_key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {paths.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            f"  HostKeyAlias {host_key_alias(vm)}",
            "  StrictHostKeyChecking yes",
            "  LogLevel ERROR",
            "",
        ]
    )


class SshConfigFiles:
    """Writes each VM's block; the glob over them is what `~/.ssh/config` includes."""

    def __init__(self, store: Store, vms_dir: Path, user_key: Path) -> None:
        self.store = store
        self.vms_dir = vms_dir
        self.user_key = user_key

    @property
    def include_pattern(self) -> str:
        return str(self.vms_dir / "*" / "ssh_config")

    def write(self, vm: Vm) -> Vm:
        """Write ``vm``'s block beside its disks (atomically); return ``vm`` for chaining."""
        path = vm_paths(vm).ssh_config
        if not path.parent.is_dir():
            return vm
        tmp = path.with_suffix(".tmp")
        tmp.write_text(render_block(vm, self.user_key))
        os.replace(tmp, path)
        return vm

    def refresh(self) -> SshConfig:
        """Every VM's block, (re)written; the include pattern and the whole text."""
        vms = self.store.list_vms()
        for vm in vms:
            self.write(vm)
        text = "\n".join(render_block(vm, self.user_key) for vm in vms)
        return SshConfig(path=self.include_pattern, text=text)
