"""What the image and kernel services receive: settings, store, the VMM and banger's key.

Built whole before the daemon serves (see services.py); nothing in it is
made lazily or filled in later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from banger.config import Settings
from banger.store import Store
from banger.vmm.base import Vmm

DEFAULT_KERNEL = "debian-bookworm-cloud"


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store
    vmm: Vmm
    user_key_path: Path
    default_kernel: str = DEFAULT_KERNEL

    def user_key(self) -> Path:
        """banger's SSH client key (made at daemon start)."""
        return self.user_key_path
