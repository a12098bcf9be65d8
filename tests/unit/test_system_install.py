"""`banger system install|status|uninstall` into a temporary root, and its units verified.

No systemd runs on this project's machines: the units are checked with
``systemd-analyze verify`` and the install with the files it leaves.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.sysinstall import units

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="installing chowns to the owner: root only")
CLI = Path(sys.executable).parent / "banger"
OWNER = "bgtestf"


@pytest.fixture(scope="module")
def owner() -> Iterator[pwd.struct_passwd]:
    if not IS_ROOT or shutil.which("useradd") is None:
        pytest.skip("creating a test user needs root and useradd")
    subprocess.run(["userdel", OWNER], capture_output=True)
    subprocess.run(["useradd", "--system", "--no-create-home", OWNER], check=True)
    try:
        yield pwd.getpwnam(OWNER)
    finally:
        subprocess.run(["userdel", OWNER], check=False)


def banger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)


def facts(path: Path) -> tuple[str, str]:
    st = path.lstat()
    return pwd.getpwuid(st.st_uid).pw_name, f"{stat.S_IMODE(st.st_mode):04o}"


def layout(tmp_path: Path, owner: pwd.struct_passwd) -> units.Layout:
    bin_dir = Path(sys.executable).parent
    return units.Layout(
        owner=owner.pw_name,
        uid=owner.pw_uid,
        gid=owner.pw_gid,
        helper_exe=bin_dir / "banger-helper",
        daemon_exe=bin_dir / "bangerd",
        root=tmp_path,
    )


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path, owner: pwd.struct_passwd) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    lay = layout(tmp_path, owner)
    for path, text in units.render(lay).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, lay.unit_paths.values())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found.setdefault(key, []).append(value)
    return found


def test_bangerd_runs_as_the_owner_with_no_capability(tmp_path: Path) -> None:
    entry = pwd.getpwuid(os.getuid())
    daemon = _settings(units.daemon_unit(layout(tmp_path, entry)))
    assert daemon["User"] == [entry.pw_name]
    assert daemon["CapabilityBoundingSet"] == [""]
    assert daemon["AmbientCapabilities"] == [""]
    assert daemon["NoNewPrivileges"] == ["yes"]
    assert daemon["ProtectSystem"] == ["strict"]
    assert daemon["PrivateTmp"] == ["yes"]
    assert daemon["Environment"] == ["BANGER_MODE=system"]
    assert daemon["RuntimeDirectory"] == ["banger/bangerd"]
    assert daemon["RuntimeDirectoryMode"] == ["0700"]
    assert daemon["StateDirectory"] == ["banger"]
    assert daemon["KillMode"] == ["process"]  # VMs outlive a daemon restart


def test_where_firecracker_is_installed_the_helper_may_jail_and_only_then(
    tmp_path: Path, owner: pwd.struct_passwd
) -> None:
    from dataclasses import replace

    plain = _settings(units.helper_unit(layout(tmp_path, owner)))
    assert plain["RestrictNamespaces"] == ["yes"] and "--jailer" not in plain["ExecStart"][0]
    jailing = replace(
        layout(tmp_path, owner),
        firecracker=Path("/usr/local/bin/firecracker"),
        jailer=Path("/usr/local/bin/jailer"),
    )
    helper = _settings(units.helper_unit(jailing))
    caps = helper["CapabilityBoundingSet"][0].split()
    assert caps[:2] == ["CAP_NET_ADMIN", "CAP_CHOWN"]
    assert set(caps[2:]) == set(units.JAILER_CAPS)
    assert "--jailer /usr/local/bin/jailer" in helper["ExecStart"][0]
    assert helper["ReadWritePaths"] == ["/var/lib/banger"]
    # Still verified by systemd (the binaries are named, not run).
    if shutil.which("systemd-analyze"):
        path = tmp_path / "etc/systemd/system/banger-helper.service"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(units.helper_unit(jailing))
        result = subprocess.run(
            ["systemd-analyze", "verify", str(path)], capture_output=True, text=True
        )
        assert "Unknown" not in result.stderr and "Invalid" not in result.stderr, result.stderr


def test_the_helper_keeps_only_the_capabilities_its_verbs_need(tmp_path: Path) -> None:
    entry = pwd.getpwuid(os.getuid())
    helper = _settings(units.helper_unit(layout(tmp_path, entry)))
    assert "User" not in helper  # root
    assert helper["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_CHOWN"]
    assert helper["ProtectHome"] == ["yes"]
    assert helper["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK AF_INET AF_INET6"]
    argv = helper["ExecStart"][0].split()
    assert argv[argv.index("--owner-uid") + 1] == str(entry.pw_uid)
    assert argv[argv.index("--socket") + 1] == "/run/banger/helper/helper.sock"
    assert argv[argv.index("--state-dir") + 1] == "/run/banger/helper/state"


@needs_root
def test_install_status_uninstall_in_a_temporary_root(
    tmp_path: Path, owner: pwd.struct_passwd
) -> None:
    root = tmp_path / "root"
    done = banger("system", "install", "--root", str(root), "--owner", OWNER)
    assert done.returncode == 0, done.stderr
    assert "systemd left alone" in done.stdout
    assert facts(root / "etc/systemd/system/bangerd.service") == ("root", "0644")
    assert facts(root / "etc/systemd/system/banger-helper.service") == ("root", "0644")
    assert facts(root / "var/lib/banger") == (OWNER, "0700")
    assert facts(root / "var/cache/banger") == (OWNER, "0700")
    assert facts(root / "run/banger") == ("root", "0755")
    assert facts(root / "run/banger/bangerd") == (OWNER, "0700")
    assert facts(root / "run/banger/helper") == ("root", "0755")
    meta = json.loads((root / "etc/banger/install.json").read_text())
    assert (meta["owner"], meta["uid"]) == (OWNER, owner.pw_uid)
    assert meta["socket"] == "/run/banger/bangerd/bangerd.sock"

    shown = banger("system", "status", "--root", str(root), "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["installed"] is True and status["owner"] == OWNER
    assert status["units"] == {
        "banger-helper.service": "unknown (no systemd)",
        "bangerd.service": "unknown (no systemd)",
    }
    assert [s["exists"] for s in status["sockets"]] == [False, False]

    (root / "var/lib/banger/banger.db").write_text("state")
    gone = banger("system", "uninstall", "--root", str(root))
    assert gone.returncode == 0, gone.stderr
    assert not (root / "etc/systemd/system/bangerd.service").exists()
    assert not (root / "etc/banger/install.json").exists()
    assert (root / "var/lib/banger/banger.db").read_text() == "state"  # kept without --purge
    assert json.loads(banger("system", "status", "--root", str(root), "--json").stdout) == {
        "installed": False
    }
    purged = banger("system", "uninstall", "--root", str(root), "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (root / "var/lib/banger").exists()
    assert not (root / "run/banger").exists()


def test_install_refuses_root_as_the_owner(tmp_path: Path) -> None:
    result = banger("system", "install", "--root", str(tmp_path), "--owner", "root")
    assert result.returncode != 0
    assert "bangerd must not run as root" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_install_needs_an_owner(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    result = subprocess.run(
        [str(CLI), "system", "install", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0
    assert "banger system install --owner USER" in result.stderr
    assert list(tmp_path.iterdir()) == []


@needs_root
def test_code_a_user_can_edit_is_never_run_as_root(tmp_path: Path) -> None:
    from banger.errors import UserError
    from banger.sysinstall.install import _root_only

    shared = tmp_path / "venv"
    shared.mkdir()
    shared.chmod(0o777)
    exe = shared / "banger-helper"
    exe.write_text("#!/bin/sh\n")
    with pytest.raises(UserError, match="writable by a user other than root"):
        _root_only(exe)
