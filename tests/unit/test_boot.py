from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Interface

import pytest

from banger.errors import UserError
from banger.guest import boot


def cmdline(**kw: object) -> str:
    args: dict[str, object] = {
        "ip": IPv4Interface("10.77.0.5/24"),
        "gateway": IPv4Address("10.77.0.1"),
        "dns": IPv4Address("10.77.0.1"),
        "hostname": "calm-otter",
    }
    args.update(kw)
    return boot.kernel_cmdline(**args)  # type: ignore[arg-type]


def test_cmdline_carries_network_and_name() -> None:
    assert cmdline(extra=["tsc_early_khz=2596148"]) == (
        "console=ttyS0 reboot=t panic=-1 net.ifnames=0 banger.ip=10.77.0.5/24"
        " banger.gw=10.77.0.1 banger.dns=10.77.0.1 banger.hostname=calm-otter"
        " tsc_early_khz=2596148"
    )


def test_cmdline_without_dns() -> None:
    assert "banger.dns" not in cmdline(dns=None)


@pytest.mark.parametrize("name", ["", "has space", "-dash", "x" * 64, "a_b"])
def test_bad_hostname_is_refused(name: str) -> None:
    with pytest.raises(UserError):
        cmdline(hostname=name)


def test_extra_argument_with_space_is_refused() -> None:
    with pytest.raises(UserError, match="whitespace"):
        cmdline(extra=["a b"])


def test_seed_files_layout() -> None:
    files = boot.seed_files(
        "ssh-ed25519 AAAA user", b"-----PRIVATE-----\n", "ssh-ed25519 BBBB host"
    )
    assert files == {
        "authorized_keys": b"ssh-ed25519 AAAA user\n",
        "ssh_host_ed25519_key": b"-----PRIVATE-----\n",
        "ssh_host_ed25519_key.pub": b"ssh-ed25519 BBBB host\n",
    }


def test_init_script_agrees_with_the_host_side() -> None:
    script = boot.init_script().decode()
    assert script.startswith("#!/bin/sh\n")
    assert f"ROOT_SERIAL={boot.ROOT_SERIAL}\n" in script
    assert f"OVERLAY_SERIAL={boot.OVERLAY_SERIAL}\n" in script
    assert f"SEED_DIR={boot.SEED_DIR}\n" in script
    for name in (boot.SEED_AUTHORIZED_KEYS, boot.SEED_HOST_KEY, boot.SEED_HOST_KEY_PUB):
        assert f'"$seed/{name}"' in script
    assert 'say "switching root"' in script and boot.SWITCHING_ROOT == "banger-init: switching root"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh to check the syntax")
def test_init_script_parses() -> None:
    result = subprocess.run(["sh", "-n"], input=boot.init_script(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
