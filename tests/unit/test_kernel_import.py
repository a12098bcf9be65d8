"""`kernel import`: what it accepts, what it refuses, and that it leaves nothing behind."""

from __future__ import annotations

import pytest

from banger.errors import UserError
from banger.kernel.importer import find_in_dir, import_kernel


def test_a_kernel_with_its_initrd_is_copied_in(tmp_path):
    src = tmp_path / "src"
    (src / "boot").mkdir(parents=True)
    (src / "boot" / "vmlinuz-6.6.1-custom").write_bytes(b"kernel")
    (src / "boot" / "initrd.img-6.6.1-custom").write_bytes(b"initrd")
    kernel, initrd, modules = find_in_dir(src)
    assert (kernel.name, initrd and initrd.name, modules) == (
        "vmlinuz-6.6.1-custom",
        "initrd.img-6.6.1-custom",
        None,
    )
    info = import_kernel(tmp_path / "kernels" / "k", kernel=kernel, initrd=initrd, modules=None)
    assert info.version == "6.6.1-custom"
    assert info.vmlinuz.read_bytes() == b"kernel" and info.initrd.read_bytes() == b"initrd"
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == ["k"]


def test_a_directory_without_a_kernel_is_refused(tmp_path):
    (tmp_path / "README").write_text("no kernel here")
    with pytest.raises(UserError, match="no kernel image") as err:
        find_in_dir(tmp_path)
    assert "vmlinuz" in (err.value.hint or "")


def test_a_kernel_alone_cannot_boot_and_nothing_is_written(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    with pytest.raises(UserError, match="neither its modules nor an initramfs"):
        import_kernel(tmp_path / "kernels" / "k", kernel=kernel, initrd=None, modules=None)
    assert not (tmp_path / "kernels").exists()


def test_an_empty_modules_directory_is_refused(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    (tmp_path / "modules").mkdir()
    with pytest.raises(UserError, match="no <version>/ directory"):
        import_kernel(tmp_path / "k", kernel=kernel, initrd=None, modules=tmp_path / "modules")
