"""The store under a killed daemon and across schema versions (the reliability suite)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from banger.store import Database, Store
from banger.store.migrations import MIGRATIONS

pytestmark = pytest.mark.reliability

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from banger.api.models import Operation, OpState
    from banger.store import Database, Store
    store = Store(Database(Path(sys.argv[1])))
    for i in range(100000):
        op = Operation(id=f"op{i}", kind="vm.create", target=f"vm{i}",
                       state=OpState.RUNNING, created_at=f"2026-12-01T00:00:{i:06d}")
        store.save_operation(op)
        print(op.id, flush=True)  # acknowledged: the transaction has committed
    """
)


def test_a_writer_killed_mid_transaction_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    db_path = tmp_path / "banger.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(300)]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]

    db = Database(db_path)
    assert db.query("PRAGMA integrity_check")[0][0] == "ok"
    stored = {row[0] for row in db.query("SELECT id FROM operations")}
    missing = [op for op in acknowledged if op not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    # A daemon that starts after the crash marks what was running as failed.
    assert Store(db).fail_interrupted_operations() == len(stored)


def _database_at(path: Path, version: int) -> None:
    """A store file as a banger with ``version`` migrations left it, with a kernel and an image."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute(
        "INSERT INTO kernels (name, version, dir, vmlinuz, initrd, source, created_at)"
        " VALUES ('k', '6.1', '/k', '/k/vmlinuz', '/k/initrd', 'test', 't')"
    )
    conn.execute(
        "INSERT INTO images (name, kernel, rootfs, size_bytes, source, created_at)"
        " VALUES ('img', 'k', '/i/rootfs.ext4', 1, 'test', 't')"
    )
    conn.close()


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_a_store_from_an_earlier_schema_migrates_and_keeps_its_rows(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "banger.db"
    _database_at(path, version)
    store = Store(Database(path))
    assert store.db.schema_version == len(MIGRATIONS)
    assert store.get_kernel("k").version == "6.1"
    assert store.get_image("img").kernel == "k"
    assert store.db.query("PRAGMA integrity_check")[0][0] == "ok"
