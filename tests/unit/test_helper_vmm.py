"""The helper's VMM verbs refuse anything but banger's own ids, paths and uids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banger.helper.errors import HostError, UserError
from banger.helper.validate import JAIL_UID_BASE, Policy
from banger.helper.verbs import dispatch
from banger.vmm import fc_config

OWNER = 4242


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "vms" / "0123456789ab").mkdir(parents=True)
    for name in ("vmlinux", "root.ext4", "vms/0123456789ab/overlay.ext4"):
        (home / name).write_bytes(b"\0")
    return home


@pytest.fixture
def policy(home: Path, tmp_path: Path) -> Policy:
    return Policy.create(
        OWNER, [home], firecracker=tmp_path / "firecracker", jailer=tmp_path / "jailer"
    )


def launch_args(home: Path, **kw: object) -> dict[str, object]:
    args: dict[str, object] = {
        "id": "0123456789ab",
        "jail_base": str(home / "jail"),
        "uid": JAIL_UID_BASE + 7,
        "gid": JAIL_UID_BASE + 7,
        "vcpus": 2,
        "memory_mib": 512,
        "files": [str(home / "vmlinux"), str(home / "root.ext4")],
        "writable": [str(home / "vms/0123456789ab/overlay.ext4")],
        "tap": "bgt0123456789",
        "log": str(home / "vms/0123456789ab/console.log"),
    }
    return {**args, **kw}


@pytest.mark.parametrize(
    ("arg", "bad", "said"),
    [
        ("id", "../etc", "not a banger VM id"),
        ("id", "A" * 65, "not a banger VM id"),
        ("uid", 0, "outside"),
        ("uid", OWNER, "outside"),
        ("gid", JAIL_UID_BASE - 1, "outside"),
        ("uid", True, "must be an integer"),
        ("vcpus", 33, "outside"),
        ("memory_mib", 64, "outside"),
        ("files", ["/etc/shadow"], "outside banger's directories"),
        ("files", "/etc/shadow", "must be a list"),
        ("writable", ["/dev/sda"], "outside banger's directories"),
        ("jail_base", "/srv/jailer", "outside banger's directories"),
        ("log", "/etc/passwd", "outside banger's directories"),
        ("tap", "eth0", "not a banger interface name"),
    ],
)
def test_vmm_launch_validates_every_argument(
    policy: Policy, home: Path, arg: str, bad: object, said: str
) -> None:
    with pytest.raises(UserError, match=said):
        dispatch(policy, "vmm_launch", launch_args(home, **{arg: bad}))
    assert not (home / "jail").exists()


def test_a_directory_is_not_a_file_to_put_in_the_jail(policy: Policy, home: Path) -> None:
    with pytest.raises(UserError, match="not a regular file"):
        dispatch(policy, "vmm_launch", launch_args(home, files=[str(home / "vms")]))


def test_no_argv_and_no_binary_come_from_the_caller(policy: Policy, home: Path) -> None:
    for extra in ({"argv": ["sh"]}, {"jailer": "/bin/sh"}, {"firecracker": "/bin/sh"}):
        with pytest.raises(UserError, match="unexpected argument"):
            dispatch(policy, "vmm_launch", launch_args(home, **extra))


def test_a_helper_started_without_binaries_says_how_to_fix_it(home: Path) -> None:
    bare = Policy.create(OWNER, [home])
    bare.ledger.record("link", "bgt0123456789", OWNER)
    with pytest.raises(HostError, match="without --firecracker and --jailer") as info:
        dispatch(bare, "vmm_launch", launch_args(home))
    assert info.value.hint and "jailer" in info.value.hint


def test_kill_of_a_vm_never_launched_is_a_no_op(policy: Policy, home: Path) -> None:
    result = dispatch(policy, "vmm_kill", {"id": "0123456789ab", "jail_base": str(home / "jail")})
    assert result == {"id": "0123456789ab", "killed": False}
    with pytest.raises(UserError, match="outside banger's directories"):
        dispatch(policy, "vmm_kill", {"id": "0123456789ab", "jail_base": "/srv/jailer"})


def test_a_tap_this_helper_did_not_make_is_never_lent_to_a_jail(policy: Policy, home: Path) -> None:
    from banger.helper.errors import Conflict

    with pytest.raises(Conflict, match="was not made by this banger-helper"):
        dispatch(policy, "vmm_launch", launch_args(home))
    policy.ledger.record("vmm", "0123456789ab", OWNER + 1)
    from banger.helper.errors import Refused

    with pytest.raises(Refused, match="belongs to uid"):
        dispatch(policy, "vmm_kill", {"id": "0123456789ab", "jail_base": str(home / "jail")})


def test_the_daemon_and_the_helper_agree_on_the_jail_uid_range() -> None:
    from banger.helper import validate

    assert fc_config.JAIL_UID_BASE == validate.JAIL_UID_BASE
    assert fc_config.JAIL_UID_COUNT == validate.JAIL_UID_COUNT
    for vm_id in ("0123456789ab", "ffffffffffff", "a"):
        uid = fc_config.jail_uid(vm_id)
        assert validate.jail_uid("uid", uid, Policy.create(OWNER, []))


@pytest.mark.skipif(os.geteuid() != 0, reason="the helper trusts only records root wrote")
def test_two_vms_whose_ids_meet_on_one_uid_get_two_uids(tmp_path: Path) -> None:
    from banger.helper import jail, vmm

    def spec(vm_id: str, uid: int) -> jail.JailSpec:
        return jail.JailSpec(
            id=vm_id,
            jailer=Path("/usr/bin/jailer"),
            firecracker=Path("/usr/bin/firecracker"),
            jail_base=tmp_path,
            uid=uid,
            gid=uid,
            vcpus=1,
            memory_mib=256,
        )

    last = JAIL_UID_BASE + 65_535
    running = spec("aaaaaaaaaaaa", last)
    running.dir.mkdir(parents=True)
    me = os.getpid()
    jail.write_record(running, {"pid": me, "start_time": jail.start_time(me), "uid": last})
    assert vmm._free_uid(spec("bbbbbbbbbbbb", last)) == JAIL_UID_BASE  # wraps in the range
    assert vmm._free_uid(spec("bbbbbbbbbbbb", last - 1)) == last - 1
    assert vmm._free_uid(spec("aaaaaaaaaaaa", last)) == last  # its own record does not count
