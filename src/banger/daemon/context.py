"""What every daemon service shares: settings, store, the VMM and the helper."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from banger.config import Settings
from banger.daemon.network import BridgeNetwork
from banger.helper_client.client import HelperClient
from banger.store import Store
from banger.vmm.accel import AccelChoice
from banger.vmm.base import Vmm

DEFAULT_KERNEL = "debian-bookworm-cloud"
DEFAULT_IMAGE = "debian-bookworm"


@dataclass
class Context:
    settings: Settings
    store: Store
    vmm: Vmm
    accel: AccelChoice
    tsc_khz: int | None
    uid: int = field(default_factory=os.getuid)
    default_image: str = DEFAULT_IMAGE
    default_kernel: str = DEFAULT_KERNEL
    _helper: HelperClient | None = None
    _helper_lock: threading.Lock = field(default_factory=threading.Lock)

    # Set by the daemon once its event loop runs.
    network: BridgeNetwork | None = None
    _user_key: Path | None = None

    def user_key(self) -> Path:
        """banger's SSH client key (made on first use)."""
        if self._user_key is None:
            from banger.guest.ssh import ensure_user_key

            self._user_key = ensure_user_key(self.settings.ssh_dir)
        return self._user_key

    def bridge(self) -> BridgeNetwork:
        if self.network is None:
            raise RuntimeError("the daemon has not set up its bridge network")
        return self.network

    def helper(self) -> HelperClient:
        """The root helper, started on first use where banger runs as root."""
        with self._helper_lock:
            if self._helper is None:
                from banger.helper_client.launch import ensure_helper

                self._helper = ensure_helper(self.settings)
            return self._helper
