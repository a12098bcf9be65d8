"""STAND-IN for Firecracker's ``jailer``: its command line, layout and pid file.

It checks its arguments as the jailer does (id, an exec file named
``*firecracker*``, uid, gid, cgroup settings as ``file=value``), makes
``<chroot-base>/<exec name>/<id>/root``, copies the exec file there, gives
the root to uid:gid, records the cgroup settings it would write in
``<chroot-base>/<exec name>/<id>/standin-cgroups.json``, and runs the copy
with ``--id=<id>`` and the arguments after ``--``. With ``--new-pid-ns`` it
forks, writes the child's pid to ``<root>/<exec name>.pid`` and exits, as the
jailer's parent does. Not done: the chroot itself, the new PID and mount
namespaces, cgroups and the privilege drop of the Firecracker process (the
stand-in Firecracker drops to uid:gid for its QEMU instead).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def fail(message: str) -> int:
    print(f"jailer (stand-in): {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in words:
        extra = words[words.index("--") + 1 :]
        words = words[: words.index("--")]
    parser = argparse.ArgumentParser(prog="jailer (stand-in)")
    parser.add_argument("--id", required=True)
    parser.add_argument("--exec-file", required=True, type=Path)
    parser.add_argument("--uid", required=True, type=int)
    parser.add_argument("--gid", required=True, type=int)
    parser.add_argument("--chroot-base-dir", type=Path, default=Path("/srv/jailer"))
    parser.add_argument("--cgroup-version", choices=["1", "2"], default="1")
    parser.add_argument("--cgroup", action="append", default=[])
    parser.add_argument("--parent-cgroup")
    parser.add_argument("--netns")
    parser.add_argument("--resource-limit", action="append", default=[])
    parser.add_argument("--daemonize", action="store_true")
    parser.add_argument("--new-pid-ns", action="store_true")
    args = parser.parse_args(words)
    if not _ID.fullmatch(args.id):
        return fail(f"invalid id {args.id!r}")
    if "firecracker" not in args.exec_file.name:
        return fail(f"exec file {args.exec_file} must be named *firecracker*")
    if not args.exec_file.is_absolute() or not args.exec_file.is_file():
        return fail(f"exec file {args.exec_file} is not an absolute path to a file")
    cgroups = {}
    for setting in args.cgroup:
        name, sep, value = setting.partition("=")
        if not sep or "." not in name or not value:
            return fail(f"invalid cgroup {setting!r} (want <file>=<value>)")
        cgroups[name] = value
    jail = args.chroot_base_dir / args.exec_file.name / args.id
    root = jail / "root"
    root.mkdir(parents=True, exist_ok=True)
    (jail / "standin-cgroups.json").write_text(
        json.dumps({"version": args.cgroup_version, "cgroups": cgroups})
    )
    exe = root / args.exec_file.name
    shutil.copy2(args.exec_file, exe)
    os.chown(root, args.uid, args.gid)
    root.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STANDIN_JAIL_ROOT": str(root)}
    for key in ("STANDIN_NO_BOOT", "STANDIN_FAIL", "BANGER_FC_SPEC", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    command = [str(exe), f"--id={args.id}", "--start-time-us=0", "--start-time-cpu-us=0", *extra]
    if args.daemonize:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    if args.new_pid_ns:
        child = os.fork()
        if child:
            (root / f"{args.exec_file.name}.pid").write_text(str(child))
            return 0
    os.chdir(root)
    os.execve(command[0], command, env)
    return 1


if __name__ == "__main__":
    sys.exit(main())
