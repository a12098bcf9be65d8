import os
import stat
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.image.customize import MASKED_UNITS, customize_tree, guest_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A few files where debootstrap leaves them."""
    root = tmp_path / "root"
    for rel, text in {
        "etc/ssh/ssh_host_rsa_key": "secret",
        "etc/ssh/ssh_host_rsa_key.pub": "pub",
        "etc/ssh/ssh_host_ed25519_key": "secret",
        "etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n",
        "etc/fstab": "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n",
        "etc/hostname": "buildhost\n",
        "etc/resolv.conf": "nameserver 192.0.2.53\n",
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "var/cache/apt/archives/git_2.39_amd64.deb": "x" * 1000,
        "var/cache/apt/pkgcache.bin": "x" * 100,
        "var/lib/apt/lists/deb.example_debian_dists_bookworm_InRelease": "x" * 10,
        "var/lib/apt/lists/lock": "",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "var/cache/apt/archives/partial").mkdir()
    wants = root / "etc/systemd/system/timers.target.wants"
    wants.mkdir(parents=True)
    (wants / "apt-daily.timer").symlink_to("/lib/systemd/system/apt-daily.timer")
    return root


def test_host_keys_removed_and_sshd_takes_keys_only(tree: Path) -> None:
    customize_tree(tree)
    assert sorted(p.name for p in (tree / "etc/ssh").iterdir()) == ["sshd_config", "sshd_config.d"]
    conf = (tree / "etc/ssh/sshd_config.d/banger.conf").read_text()
    for line in (
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UseDNS no",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
    ):
        assert line in conf.splitlines()
    assert conf.count("HostKey") == 1


def test_identity_and_fstab(tree: Path) -> None:
    customize_tree(tree)
    assert (tree / "etc/hostname").read_text() == "banger\n"
    assert (tree / "etc/machine-id").read_text() == ""
    fstab = [
        line
        for line in (tree / "etc/fstab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert fstab == []
    assert "localhost" in (tree / "etc/hosts").read_text()
    assert "192.0.2.53" not in (tree / "etc/resolv.conf").read_text()


def test_ssh_enabled_and_slow_units_masked(tree: Path) -> None:
    customize_tree(tree)
    system = tree / "etc/systemd/system"
    assert os.readlink(system / "multi-user.target.wants/ssh.service") == (
        "/lib/systemd/system/ssh.service"
    )
    for unit in ("serial-getty@.service", "systemd-firstboot.service", "apt-daily.timer"):
        assert unit in MASKED_UNITS
        assert os.readlink(system / unit) == "/dev/null"
    assert not (system / "timers.target.wants/apt-daily.timer").is_symlink()


def test_root_ssh_dir_and_apt_caches(tree: Path) -> None:
    customize_tree(tree)
    assert stat.S_IMODE((tree / "root/.ssh").stat().st_mode) == 0o700
    assert list((tree / "var/cache/apt/archives").iterdir()) == [
        tree / "var/cache/apt/archives/partial"
    ]
    assert not (tree / "var/cache/apt/pkgcache.bin").exists()
    assert [p.name for p in (tree / "var/lib/apt/lists").iterdir()] == ["lock"]


def test_customizing_twice_is_harmless(tree: Path) -> None:
    customize_tree(tree)
    customize_tree(tree)
    assert (tree / "etc/hostname").read_text() == "banger\n"


def test_symlinks_in_the_tree_are_replaced_not_followed(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-hostname"
    outside.write_text("host\n")
    (tree / "etc/hostname").unlink()
    (tree / "etc/hostname").symlink_to(outside)
    customize_tree(tree)
    assert outside.read_text() == "host\n"
    assert (tree / "etc/hostname").read_text() == "banger\n"


def test_symlinked_parent_directory_is_refused(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tree / "etc/ssh/sshd_config.d").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HostError, match="symlink"):
        customize_tree(tree)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_not_a_root_filesystem(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="root filesystem"):
        customize_tree(tmp_path)
    with pytest.raises(ValueError):
        guest_path(tmp_path, "../etc/passwd")
