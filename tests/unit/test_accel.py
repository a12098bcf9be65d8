from __future__ import annotations

import os
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.vmm.accel import detect_accel, host_tsc_khz


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    dev = tmp_path / "kvm"
    dev.write_bytes(b"")  # any file that opens read-write stands in for /dev/kvm
    (tmp_path / "module").mkdir()
    (tmp_path / "boot").mkdir()
    return {"dev_kvm": dev, "sys_module": tmp_path / "module", "boot_dir": tmp_path / "boot"}


def test_usable_kvm_is_chosen(host: dict[str, Path]) -> None:
    assert detect_accel("auto", **host).kind == "kvm"


def test_missing_kvm_falls_back_to_tcg(host: dict[str, Path]) -> None:
    host["dev_kvm"].unlink()
    choice = detect_accel("auto", **host)
    assert choice.kind == "tcg" and "does not exist" in choice.reason


def test_pvm_module_means_tcg_and_says_why(host: dict[str, Path]) -> None:
    (host["sys_module"] / "kvm_pvm").mkdir()
    choice = detect_accel("auto", **host)
    assert choice.kind == "tcg" and "PVM" in choice.reason and "stock" in choice.reason


def test_pvm_in_kernel_config_means_tcg(host: dict[str, Path]) -> None:
    (host["boot_dir"] / f"config-{os.uname().release}").write_text(
        "CONFIG_KVM=m\nCONFIG_KVM_PVM=m\n"
    )
    assert detect_accel("auto", **host).kind == "tcg"


def test_kvm_asked_but_unusable_is_an_error(host: dict[str, Path]) -> None:
    (host["sys_module"] / "kvm_pvm").mkdir()
    with pytest.raises(HostError, match="PVM") as info:
        detect_accel("kvm", **host)
    assert info.value.hint is not None and "accel" in info.value.hint


def test_tcg_asked_is_tcg_even_with_kvm(host: dict[str, Path]) -> None:
    assert detect_accel("tcg", **host).kind == "tcg"


def test_tsc_khz_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.148\n")
    assert host_tsc_khz(cpuinfo) == 2596148
    cpuinfo.write_text("processor\t: 0\n")
    assert host_tsc_khz(cpuinfo) is None
    assert host_tsc_khz(tmp_path / "missing") is None
