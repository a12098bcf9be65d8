"""banger's persistent state: SQLite in WAL mode."""

from banger.store.db import Database
from banger.store.repo import Store

__all__ = ["Database", "Store"]
