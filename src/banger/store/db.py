"""SQLite access: one connection, WAL mode, migrations applied at open.

The daemon calls into the store from worker threads, so every use goes
through one lock; SQLite work here is tiny next to booting a VM.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from banger.errors import HostError
from banger.store.migrations import MIGRATIONS

log = logging.getLogger("banger.store")


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise HostError(f"cannot open the store {path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply each pending migration in its own transaction."""
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise HostError(
                    f"the store {self.path} has schema version {current}, newer than this"
                    f" banger knows ({len(MIGRATIONS)})",
                    hint="upgrade banger, or move the store aside",
                )
            for number in range(current + 1, len(MIGRATIONS) + 1):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[number - 1]:
                        self._conn.execute(statement)
                    # PRAGMA takes no parameters; number is our own int.
                    self._conn.execute(f"PRAGMA user_version = {int(number)}")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                log.info("store migrated to schema %d", number)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()
