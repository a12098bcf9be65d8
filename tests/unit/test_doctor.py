from dataclasses import replace
from pathlib import Path

import pytest

from banger.config import Settings
from banger.doctor import GIB, Check, Host, is_static_elf, kvm_is_pvm, run_checks

ALL_TOOLS = {
    "qemu-system-x86_64", "qemu-img", "firecracker", "jailer", "nft", "mkfs.ext4", "debugfs",
    "debootstrap", "busybox", "apt-get", "dpkg-deb", "ssh", "ssh-keygen", "ip",
}  # fmt: skip


@pytest.fixture
def fake(tmp_path: Path) -> Host:
    """A healthy host with hardware KVM and every tool, rooted in tmp_path."""
    dev, sysmod, boot = tmp_path / "dev", tmp_path / "sys/module", tmp_path / "boot"
    for path in (dev / "net", dev / "mapper", sysmod / "bridge", boot):
        path.mkdir(parents=True)
    for node in ("kvm", "net/tun", "loop-control", "mapper/control"):
        (dev / node).touch()
    static = tmp_path / "busybox"
    static.write_bytes(elf(interp=False))
    return Host(
        dev=dev,
        sys_module=sysmod,
        boot=boot,
        release="6.1.0-test",
        which=lambda name: (
            (str(static) if name == "busybox" else f"/usr/bin/{name}")
            if name in ALL_TOOLS
            else None
        ),
        version=lambda binary: f"{Path(binary).name} version 1.0",
        can_open=lambda path: True,
        free_bytes=lambda path: 100 * GIB,
    )


def elf(*, interp: bool) -> bytes:
    """A minimal 64-bit little-endian ELF header with one program header."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[0x20:0x28] = (64).to_bytes(8, "little")  # e_phoff
    header[0x36:0x38] = (56).to_bytes(2, "little")  # e_phentsize
    header[0x38:0x3A] = (1).to_bytes(2, "little")  # e_phnum
    phdr = bytearray(56)
    phdr[:4] = (3 if interp else 1).to_bytes(4, "little")
    return bytes(header + phdr)


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", runtime_dir=tmp_path / "run" / "banger")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_healthy_host_is_all_ok(fake: Host, tmp_path: Path) -> None:
    checks = run_checks(settings(tmp_path), fake)
    assert [c for c in checks if c.status != "ok"] == []
    assert by_name(checks)["qemu"].detail == "qemu-system-x86_64 version 1.0"


def test_every_problem_has_a_one_sentence_remedy(tmp_path: Path) -> None:
    bare = Host(
        dev=tmp_path / "nodev",
        sys_module=tmp_path / "nosys",
        boot=tmp_path / "noboot",
        which=lambda name: None,
        free_bytes=lambda path: 0,
    )
    checks = run_checks(settings(tmp_path), bare)
    for check in checks:
        if check.name == "sockets":
            continue
        assert check.status in ("warn", "fail"), check
        assert check.remedy.endswith("."), check
        assert check.remedy.count(". ") == 0, check
    names = by_name(checks)
    assert names["qemu"].status == "fail"
    assert "qemu-system-x86" in names["qemu"].remedy
    assert names["ssh"].status == "fail" and "openssh-client" in names["ssh"].remedy
    assert names["device-mapper"].status == "warn"
    assert "in-guest overlay" in names["device-mapper"].detail
    assert names["firecracker"].detail == "firecracker not found: QEMU is used instead"
    assert names["disk"].status == "fail" and "BANGER_HOME" in names["disk"].remedy


def test_pvm_is_a_warning_about_tcg(fake: Host) -> None:
    (fake.sys_module / "kvm_pvm").mkdir()
    assert kvm_is_pvm(fake)
    check = by_name(run_checks(Settings(), fake))["kvm"]
    assert check.status == "warn"
    assert "PVM" in check.detail and "software emulation (TCG)" in check.detail


@pytest.mark.parametrize("value,pvm", [("y", True), ("m", True), ("n", False)])
def test_pvm_from_kernel_config(fake: Host, value: str, pvm: bool) -> None:
    (fake.boot / "config-6.1.0-test").write_text(f"CONFIG_KVM=y\nCONFIG_KVM_PVM={value}\n")
    assert kvm_is_pvm(fake) is pvm


def test_kvm_missing_or_closed(fake: Host) -> None:
    closed = by_name(run_checks(Settings(), replace(fake, can_open=lambda p: False)))["kvm"]
    assert closed.status == "warn" and "kvm group" in closed.remedy
    (fake.dev / "kvm").unlink()
    missing = by_name(run_checks(Settings(), fake))["kvm"]
    assert missing.status == "warn" and "missing" in missing.detail


def test_qemu_missing_is_only_a_warning_with_firecracker(fake: Host) -> None:
    no_qemu = replace(fake, which=lambda n: None if n.startswith("qemu") else fake.which(n))
    assert by_name(run_checks(Settings(), no_qemu))["qemu"].status == "warn"


@pytest.mark.parametrize("free,status", [(10 * GIB, "ok"), (3 * GIB, "warn"), (GIB // 2, "fail")])
def test_disk_space_thresholds(fake: Host, tmp_path: Path, free: int, status: str) -> None:
    seen: list[Path] = []

    def free_bytes(path: Path) -> int:
        seen.append(path)
        return free

    check = by_name(run_checks(settings(tmp_path), replace(fake, free_bytes=free_bytes)))["disk"]
    assert check.status == status
    assert seen == [tmp_path]  # the nearest directory that exists


def test_socket_directory(fake: Host, tmp_path: Path) -> None:
    ok = by_name(run_checks(settings(tmp_path), fake))["sockets"]
    assert ok.status == "ok" and "will be created" in ok.detail
    (tmp_path / "run").write_text("a file, not a directory")
    bad = by_name(run_checks(settings(tmp_path), fake))["sockets"]
    assert bad.status == "fail" and "BANGER_RUNTIME_DIR" in bad.remedy
    long = Settings(runtime_dir=tmp_path / ("x" * 120))
    assert by_name(run_checks(long, fake))["sockets"].status == "fail"


def test_dynamic_busybox_warns(fake: Host, tmp_path: Path) -> None:
    dynamic = tmp_path / "busybox-dyn"
    dynamic.write_bytes(elf(interp=True))
    assert not is_static_elf(dynamic)
    host = replace(fake, which=lambda n: str(dynamic) if n == "busybox" else fake.which(n))
    check = by_name(run_checks(Settings(), host))["busybox"]
    assert check.status == "warn" and "busybox-static" in check.remedy


def test_bridge_module_not_loaded_is_fine_but_no_ip_fails(fake: Host) -> None:
    (fake.sys_module / "bridge").rmdir()
    assert by_name(run_checks(Settings(), fake))["bridge"].status == "ok"
    no_ip = replace(fake, which=lambda n: None if n == "ip" else fake.which(n))
    bridge = by_name(run_checks(Settings(), no_ip))["bridge"]
    assert bridge.status == "fail" and "iproute2" in bridge.remedy


def test_real_host_runs(tmp_path: Path) -> None:
    checks = run_checks(settings(tmp_path))
    assert {c.status for c in checks} <= {"ok", "warn", "fail"}
    assert len({c.name for c in checks}) == len(checks)
