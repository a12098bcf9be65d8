"""Numbered schema migrations; ``PRAGMA user_version`` records the last applied.

Append only: a released migration is never edited, a change is a new entry.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema.
    (
        """CREATE TABLE kernels (
            name TEXT PRIMARY KEY,
            version TEXT NOT NULL,
            dir TEXT NOT NULL,
            vmlinuz TEXT NOT NULL,
            initrd TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE images (
            name TEXT PRIMARY KEY,
            kernel TEXT NOT NULL REFERENCES kernels(name),
            rootfs TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE vms (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            image TEXT NOT NULL REFERENCES images(name),
            state TEXT NOT NULL,
            vcpus INTEGER NOT NULL,
            memory_mib INTEGER NOT NULL,
            overlay_bytes INTEGER NOT NULL,
            tap TEXT NOT NULL UNIQUE,
            mac TEXT NOT NULL,
            vmm TEXT NOT NULL,
            dir TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE leases (
            ip TEXT PRIMARY KEY,
            vm_id TEXT NOT NULL UNIQUE REFERENCES vms(id) ON DELETE CASCADE,
            leased_at TEXT NOT NULL
        )""",
        """CREATE TABLE operations (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            state TEXT NOT NULL,
            stage TEXT NOT NULL DEFAULT '',
            error TEXT,
            result TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )""",
    ),
    # 2: work disks, NAT, and what an image needs to boot (issues 3 and 4).
    (
        "ALTER TABLE vms ADD COLUMN work_disk_bytes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE vms ADD COLUMN nat INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE images ADD COLUMN work_seed TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE images ADD COLUMN init TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE images ADD COLUMN config TEXT NOT NULL DEFAULT '{}'",
    ),
    # 3: each kernel's ELF vmlinux beside its bzImage, for Firecracker (issue 9).
    ("ALTER TABLE kernels ADD COLUMN vmlinux TEXT NOT NULL DEFAULT ''",),
    # 4: workspaces, one per VM, gone with it (issue 8).
    (
        """CREATE TABLE workspaces (
            vm_id TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
            host_path TEXT NOT NULL,
            guest_path TEXT NOT NULL,
            base_commit TEXT NOT NULL,
            tree TEXT NOT NULL,
            host_head TEXT NOT NULL DEFAULT '',
            branch TEXT,
            mode TEXT NOT NULL,
            include_untracked INTEGER NOT NULL,
            prepared_at TEXT NOT NULL
        )""",
    ),
    # 5: the guest channel version an image's agent speaks, 0 for older images (issue 11).
    ("ALTER TABLE images ADD COLUMN channel INTEGER NOT NULL DEFAULT 0",),
    # 6: published ports, automatic forwarding and shared directories (issue 15).
    (
        """CREATE TABLE forwards (
            vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
            host_ip TEXT NOT NULL,
            host_port INTEGER NOT NULL,
            guest_port INTEGER NOT NULL,
            proto TEXT NOT NULL,
            PRIMARY KEY (host_ip, host_port, proto)
        )""",
        "ALTER TABLE vms ADD COLUMN forward_ports TEXT NOT NULL DEFAULT 'off'",
        "ALTER TABLE vms ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]'",
    ),
    # 7: snapshots of VMs, and the snapshot a VM was restored from (issue 12).
    (
        """CREATE TABLE snapshots (
            name TEXT PRIMARY KEY,
            vm TEXT NOT NULL,
            image TEXT NOT NULL REFERENCES images(name),
            kernel TEXT NOT NULL,
            vmm TEXT NOT NULL,
            vcpus INTEGER NOT NULL,
            memory_mib INTEGER NOT NULL,
            overlay_bytes INTEGER NOT NULL,
            work_disk_bytes INTEGER NOT NULL,
            nat INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            dir TEXT NOT NULL,
            created_at TEXT NOT NULL,
            kernel_path TEXT NOT NULL,
            initrd_path TEXT NOT NULL,
            rootfs TEXT NOT NULL,
            cmdline TEXT NOT NULL,
            mac TEXT NOT NULL,
            ip TEXT NOT NULL,
            vmm_version TEXT NOT NULL,
            banger_version TEXT NOT NULL
        )""",
        "ALTER TABLE vms ADD COLUMN snapshot TEXT NOT NULL DEFAULT ''",
    ),
    # 8: images' boot snapshots beside users' snapshots, told apart by kind (warm start).
    (
        "ALTER TABLE snapshots ADD COLUMN kind TEXT NOT NULL DEFAULT 'user'",
        "ALTER TABLE snapshots ADD COLUMN boot_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE vms ADD COLUMN boot_snapshot INTEGER NOT NULL DEFAULT 0",
    ),
)
