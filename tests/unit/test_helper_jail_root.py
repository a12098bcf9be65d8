"""vmm_launch and vmm_kill as root, against the stand-in jailer (no guest boots).

Run in a network namespace of their own (``unshare --net``), so the tap they
hand to the jail's uid is a throwaway one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.standin import spec
from tests.standin.install import install

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or spec.spec_path() is None,
    reason="needs root, unshare and Firecracker's API spec",
)

SCENARIO = r"""
import json, os, sys
from pathlib import Path
from banger.helper import jail, run
from banger.helper.validate import JAIL_UID_BASE, Policy
from banger.helper.verbs import dispatch

home, firecracker, jailer = (Path(a) for a in sys.argv[1:4])
run.run(["ip", "tuntap", "add", "dev", "bgtjail0", "mode", "tap", "user", "0"])
policy = Policy.create(0, [home], firecracker=firecracker, jailer=jailer)
policy.ledger.record("link", "bgtjail0", 0)  # made by this helper, as tap_create would
vm = home / "vms" / "0123456789ab"
uid = JAIL_UID_BASE + 5
args = {
    "id": "0123456789ab", "jail_base": str(home / "jail"), "uid": uid, "gid": uid,
    "vcpus": 2, "memory_mib": 256,
    "files": [str(home / "vmlinux")], "writable": [str(vm / "overlay.ext4")],
    "tap": "bgtjail0", "log": str(vm / "console.log"),
}
out = {"launch": dispatch(policy, "vmm_launch", args)}
root = Path(out["launch"]["root"])
out["overlay_uid_running"] = (vm / "overlay.ext4").stat().st_uid
link = json.loads(run.run(["ip", "-j", "-d", "link", "show", "dev", "bgtjail0"]).stdout)[0]
out["tap_owner"] = str(link["linkinfo"]["info_data"].get("user"))
out["same_inode"] = (root / "1-overlay.ext4").stat().st_ino == (vm / "overlay.ext4").stat().st_ino
out["socket_uid"] = Path(out["launch"]["api_socket"]).stat().st_uid
try:
    dispatch(policy, "vmm_launch", args)
except Exception as exc:
    out["second"] = type(exc).__name__
out["kill"] = dispatch(policy, "vmm_kill", {"id": args["id"], "jail_base": args["jail_base"]})
out["pid_gone"] = jail.start_time(out["launch"]["pid"]) is None
out["jail_gone"] = not (home / "jail" / "firecracker" / "0123456789ab").exists()
out["overlay_uid_after"] = (vm / "overlay.ext4").stat().st_uid
out["again"] = dispatch(policy, "vmm_kill", {"id": args["id"], "jail_base": args["jail_base"]})
print(json.dumps(out))
"""


def test_launch_lends_files_and_tap_to_the_jail_and_kill_takes_them_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    vm = home / "vms" / "0123456789ab"
    vm.mkdir(parents=True)
    (home / "vmlinux").write_bytes(b"\0" * 512)
    (vm / "overlay.ext4").write_bytes(b"\0" * 512)
    firecracker, jailer = install(tmp_path / "bin", {"STANDIN_NO_BOOT": "1"})
    env = {**os.environ, "PYTHONPATH": str(spec.REPO / "src") + ":" + str(spec.REPO)}
    argv = ["unshare", "--net", sys.executable, "-c", SCENARIO, str(home)]
    result = subprocess.run(
        [*argv, str(firecracker), str(jailer)], capture_output=True, text=True, env=env, timeout=60
    )
    console = vm / "console.log"
    assert result.returncode == 0, result.stderr + (console.read_text() if console.exists() else "")
    out = json.loads(result.stdout.splitlines()[-1])
    uid = 900_005
    assert out["launch"]["files"] == {
        str(home / "vmlinux"): "/0-vmlinux",
        str(vm / "overlay.ext4"): "/1-overlay.ext4",
    }
    assert out["overlay_uid_running"] == uid and out["tap_owner"] == str(uid)
    assert out["same_inode"] is True  # a hard link, not a copy
    assert out["socket_uid"] == 0  # the API socket is handed to the owner (root here)
    assert out["second"] == "Conflict"
    assert out["kill"] == {"id": "0123456789ab", "killed": True}
    assert out["pid_gone"] and out["jail_gone"] and out["overlay_uid_after"] == 0
    assert out["again"] == {"id": "0123456789ab", "killed": False}
