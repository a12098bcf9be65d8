"""One probe for everything banger can leave on a host, checked against its store.

Used after a killed daemon, helper or VMM: whatever is on the host must
belong to a VM the store still names (and, for running parts, to a VM the
store says runs); after every VM is deleted, nothing at all may remain.
Each finding is one line saying what and where.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredVm:
    id: str
    name: str
    state: str
    tap: str
    ip: str
    dir: str


def stored_vms(home: Path) -> list[StoredVm]:
    db = sqlite3.connect(home / "banger.db")
    try:
        rows = db.execute(
            "SELECT v.id, v.name, v.state, v.tap, COALESCE(l.ip, ''), v.dir"
            " FROM vms v LEFT JOIN leases l ON l.vm_id = v.id"
        ).fetchall()
    finally:
        db.close()
    return [StoredVm(*row) for row in rows]


def argvs() -> dict[int, list[bytes]]:
    """Every process on the host: pid -> its argv (a process gone meanwhile is left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
    return found


def processes() -> dict[int, str]:
    """Every process on the host: pid -> its command line, words joined by spaces."""
    return {pid: b" ".join(argv).decode() for pid, argv in argvs().items()}


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def leaks(home: Path, runtime: Path, bridge: str) -> list[str]:
    """What the host holds for banger that its store does not account for."""
    vms = stored_vms(home)
    running = [vm for vm in vms if vm.state == "running"]
    found: list[str] = []

    db = sqlite3.connect(home / "banger.db")
    try:
        orphans = db.execute(
            "SELECT ip FROM leases WHERE vm_id NOT IN (SELECT id FROM vms)"
        ).fetchall()
        ips = [row[0] for row in db.execute("SELECT ip FROM leases").fetchall()]
    finally:
        db.close()
    found += [f"lease {ip} of no VM" for (ip,) in orphans]
    if len(ips) != len(set(ips)):
        found.append(f"an address leased twice: {sorted(ips)}")

    taps = {vm.tap for vm in running}
    for link in json.loads(_run("ip", "-j", "link") or "[]"):
        name = link.get("ifname", "")
        # Only this run's bridge: other runs on the host have taps of their own.
        if name.startswith("bgt") and link.get("master") == bridge and name not in taps:
            found.append(f"tap {name} (master {link.get('master')}) of no running VM")

    dirs = {str(Path(vm.dir)) for vm in running}
    running_now = processes()
    for pid, cmdline in running_now.items():
        # The program, not any word: a shell running `pytest test_firecracker...` is no VMM
        # (a script's interpreter comes first, as for the Firecracker stand-in).
        programs = [Path(word).name for word in cmdline.split(" ")[:2]]
        is_vmm = any(p.startswith("qemu-system") or "firecracker" in p for p in programs)
        if is_vmm and str(home) in cmdline and not any(d in cmdline for d in dirs):
            found.append(f"VMM pid {pid} of no running VM: {cmdline[:120]}")
    helpers = [p for p, c in running_now.items() if "banger-helper" in c and str(runtime) in c]
    if len(helpers) > 1:
        found.append(f"{len(helpers)} banger-helper processes for one runtime dir: {helpers}")

    table = f"banger_{bridge}"
    ruleset = _run("nft", "-j", "list", "table", "inet", table)
    allowed = {vm.ip for vm in running}
    if ruleset:
        for item in json.loads(ruleset).get("nftables", []):
            elements = item.get("set", {}).get("elem", []) if "set" in item else []
            for element in elements:
                if isinstance(element, str) and element not in allowed:
                    found.append(f"nft {table} NAT source {element} of no running VM")
        if not vms:
            found.append(f"nft table inet {table} with no VM left")

    found += [f"loop device {ln}" for ln in _run("losetup", "-a").splitlines() if str(home) in ln]
    for line in Path("/proc/mounts").read_text().splitlines():
        if str(home) in line or str(runtime) in line:
            found.append(f"mount {line}")

    known_dirs = {str(Path(vm.dir)) for vm in vms}
    vms_dir = home / "vms"
    for path in sorted(vms_dir.iterdir()) if vms_dir.is_dir() else []:
        if str(path) not in known_dirs:
            found.append(f"VM directory {path} of no VM")
    found += [f"temporary {p}" for p in temporaries(home)]
    return found


def temporaries(home: Path) -> list[Path]:
    """Half-written files and directories (banger writes under hidden names, then renames)."""
    out: list[Path] = []
    tops = [home / "kernels", home / "images", home / "vms", home / "cache" / "agent",
            home / "cache" / "flat", home / "cache" / "oci" / "blobs" / "sha256"]  # fmt: skip
    for top in tops:
        if not top.is_dir():
            continue
        out += [p for p in top.iterdir() if p.name.startswith(".")]
        if top.name in ("kernels", "vms"):
            for sub in top.iterdir():
                if sub.is_dir():
                    out += [p for p in sub.iterdir() if p.name.startswith(".")]
                    out += [p for p in sub.glob("*.tmp")]
    return sorted(out)
