from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from banger import doctor as doctor_module
from banger.cli.main import cli
from banger.config import Settings
from banger.doctor import GIB, Check, Host, is_static_elf, kvm_is_pvm, run_checks

ALL_TOOLS = {
    "qemu-system-x86_64", "qemu-img", "firecracker", "jailer", "nft", "mkfs.ext4", "debugfs",
    "debootstrap", "apt-get", "dpkg-deb", "ssh", "ssh-keygen", "ip", "resolvectl", "go",
}  # fmt: skip


@pytest.fixture
def fake(tmp_path: Path) -> Host:
    """A healthy host with hardware KVM, every tool, systemd-resolved, rooted in tmp_path.

    Its banger home (``settings(tmp_path)``) holds one pulled kernel.
    """
    dev, sysmod, boot = tmp_path / "dev", tmp_path / "sys/module", tmp_path / "boot"
    resolve, etc = tmp_path / "sysrun/systemd/resolve", tmp_path / "etc"
    kernel = settings(tmp_path).kernels_dir / "debian-cloud"
    for path in (dev / "net", dev / "mapper", sysmod / "bridge", boot, resolve, etc, kernel):
        path.mkdir(parents=True)
    for node in ("kvm", "net/tun", "loop-control", "mapper/control"):
        (dev / node).touch()
    (kernel / "busybox").write_bytes(elf(interp=False))
    (etc / "resolv.conf").write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    return Host(
        dev=dev,
        sys_module=sysmod,
        boot=boot,
        release="6.1.0-test",
        which=lambda name: f"/usr/bin/{name}" if name in ALL_TOOLS else None,
        version=lambda binary: f"{Path(binary).name} version 1.0",
        can_open=lambda path: True,
        free_bytes=lambda path: 100 * GIB,
        resolve_dir=resolve,
        resolv_conf=etc / "resolv.conf",
        nsswitch=etc / "nsswitch.conf",
        resolved_domains=lambda bridge: f"Link 7 ({bridge}): ~vm\n",
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
        resolve_dir=tmp_path / "noresolve",
        resolv_conf=tmp_path / "no-resolv.conf",
        nsswitch=tmp_path / "no-nsswitch.conf",
    )
    checks = run_checks(settings(tmp_path), bare)
    for check in checks:
        if check.name == "sockets":
            continue
        assert check.status in ("info", "warn", "fail"), check
        assert check.remedy.endswith("."), check
        assert check.remedy.count(". ") == 0, check
    names = by_name(checks)
    assert names["qemu"].status == "fail"
    assert "qemu-system-x86" in names["qemu"].remedy
    assert names["ssh"].status == "fail" and "openssh-client" in names["ssh"].remedy
    assert names["device-mapper"].status == "info"
    assert "in-guest overlay" in names["device-mapper"].detail
    assert names["firecracker"].status == "info"
    assert "QEMU is used instead (Firecracker is optional)" in names["firecracker"].detail
    assert names["dns-forward"].status == "warn"
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

    fresh = Settings(home=tmp_path / "new" / "home", runtime_dir=tmp_path / "run" / "banger")
    check = by_name(run_checks(fresh, replace(fake, free_bytes=free_bytes)))["disk"]
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


def test_a_runtime_directory_others_can_reach_fails(fake: Host, tmp_path: Path) -> None:
    shared = tmp_path / "run" / "banger"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    check = by_name(run_checks(settings(tmp_path), fake))["sockets"]
    assert check.status == "fail" and "not 0700" in check.detail
    shared.chmod(0o700)
    check = by_name(run_checks(settings(tmp_path), fake))["sockets"]
    assert check.status == "ok" and "private" in check.detail


def test_busybox_is_the_pulled_kernels_not_the_hosts(fake: Host, tmp_path: Path) -> None:
    # The fake host has no busybox on PATH at all: banger never uses one.
    assert fake.which("busybox") is None
    check = by_name(run_checks(settings(tmp_path), fake))["busybox"]
    assert check.status == "ok" and "1 pulled kernel" in check.detail


def test_no_kernel_pulled_yet_is_information(fake: Host, tmp_path: Path) -> None:
    (settings(tmp_path).kernels_dir / "debian-cloud" / "busybox").unlink()
    check = by_name(run_checks(settings(tmp_path), fake))["busybox"]
    assert check.status == "info" and "banger kernel pull" in check.detail
    assert "busybox-static" not in check.remedy  # nothing for the user to install
    # A kernel imported with its own initrd needs no busybox of banger's.
    (settings(tmp_path).kernels_dir / "debian-cloud" / "vmlinuz").touch()
    check = by_name(run_checks(settings(tmp_path), fake))["busybox"]
    assert check.status == "ok" and "own initramfs" in check.detail


def test_dynamic_busybox_in_a_kernel_warns(fake: Host, tmp_path: Path) -> None:
    dynamic = settings(tmp_path).kernels_dir / "debian-cloud" / "busybox"
    dynamic.write_bytes(elf(interp=True))
    assert not is_static_elf(dynamic)
    check = by_name(run_checks(settings(tmp_path), fake))["busybox"]
    assert check.status == "warn" and "debian-cloud" in check.remedy


def test_firecracker_is_optional_unless_asked_for(fake: Host, tmp_path: Path) -> None:
    no_fc = replace(fake, which=lambda n: None if n in ("firecracker", "jailer") else f"/b/{n}")
    names = by_name(run_checks(settings(tmp_path), no_fc))
    assert (names["firecracker"].status, names["jailer"].status) == ("info", "info")
    asked = replace(settings(tmp_path), vmm="firecracker")
    names = by_name(run_checks(asked, no_fc))
    assert (names["firecracker"].status, names["jailer"].status) == ("fail", "warn")


def test_vm_names_with_systemd_resolved(fake: Host, tmp_path: Path) -> None:
    linked = by_name(run_checks(settings(tmp_path), fake))["vm-names"]
    assert linked.status == "ok" and "(bg0)" in linked.detail
    idle = replace(fake, resolved_domains=lambda bridge: "")
    check = by_name(run_checks(settings(tmp_path), idle))["vm-names"]
    assert check.status == "ok" and "while VMs run" in check.detail


def test_vm_names_without_systemd_resolved_is_information(fake: Host, tmp_path: Path) -> None:
    fake.resolve_dir.rmdir()
    check = by_name(run_checks(settings(tmp_path), fake))["vm-names"]
    assert check.status == "info"
    assert "does not resolve" in check.detail and "banger vm show NAME" in check.detail
    assert "systemd-resolved" in check.remedy and "server=/vm/10.77.0.1" in check.remedy


def test_vm_names_when_lookups_bypass_resolved(fake: Host, tmp_path: Path) -> None:
    fake.resolv_conf.write_text("nameserver 192.0.2.1\n")
    check = by_name(run_checks(settings(tmp_path), fake))["vm-names"]
    assert check.status == "info" and "nsswitch.conf" in check.remedy
    fake.nsswitch.write_text("hosts: files resolve [!UNAVAIL=return] dns\n")
    assert by_name(run_checks(settings(tmp_path), fake))["vm-names"].status == "ok"


def test_dns_forwarding_upstreams(fake: Host, tmp_path: Path) -> None:
    check = by_name(run_checks(settings(tmp_path), fake))["dns-forward"]
    assert check.status == "ok" and "127.0.0.53" in check.detail
    fake.resolv_conf.write_text("search lan\n")
    check = by_name(run_checks(settings(tmp_path), fake))["dns-forward"]
    assert check.status == "warn" and "BANGER_DNS_UPSTREAMS" in check.remedy
    configured = replace(settings(tmp_path), dns_upstreams=("192.0.2.53:5353",))
    check = by_name(run_checks(configured, fake))["dns-forward"]
    assert check.status == "ok" and "192.0.2.53:5353 (dns_upstreams)" in check.detail


def test_cli_marks_info_apart_from_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [
        Check("kvm", "ok", "usable"),
        Check("firecracker", "info", "not found: QEMU is used instead", "Install it."),
        Check("disk", "warn", "3.0 GiB free", "Free some space."),
    ]
    monkeypatch.setattr(doctor_module, "run_checks", lambda settings: checks)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "[ ok ] kvm: usable"
    assert lines[1] == "[info] firecracker: not found: QEMU is used instead"
    assert lines[3] == "[WARN] disk: 3.0 GiB free"
    assert lines[-1] == "0 failed, 1 to act on (WARN), 1 for information, 1 ok"


def test_bridge_module_not_loaded_is_fine_but_no_ip_fails(fake: Host) -> None:
    (fake.sys_module / "bridge").rmdir()
    assert by_name(run_checks(Settings(), fake))["bridge"].status == "ok"
    no_ip = replace(fake, which=lambda n: None if n == "ip" else fake.which(n))
    bridge = by_name(run_checks(Settings(), no_ip))["bridge"]
    assert bridge.status == "fail" and "iproute2" in bridge.remedy


def test_real_host_runs(tmp_path: Path) -> None:
    checks = run_checks(settings(tmp_path))
    assert {c.status for c in checks} <= {"ok", "info", "warn", "fail"}
    assert len({c.name for c in checks}) == len(checks)
