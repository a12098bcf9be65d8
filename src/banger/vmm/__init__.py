"""VMM drivers behind one small interface (``banger.vmm.base.Vmm``)."""

from __future__ import annotations

from banger.config import Settings
from banger.errors import HostError
from banger.vmm.base import Vmm


def select_vmm(settings: Settings) -> Vmm:
    """The driver for this host: QEMU (Firecracker support is not written yet)."""
    if settings.vmm == "firecracker":
        raise HostError(
            "the Firecracker driver is not available in this version of banger",
            hint="set vmm = auto or vmm = qemu in banger's config (or unset BANGER_VMM)",
        )
    from banger.vmm.qemu import QemuVmm

    return QemuVmm()
