from __future__ import annotations

import pytest

from banger.api.models import Image, Kernel
from banger.config import Settings
from banger.store import Database, Store


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", runtime_dir=tmp_path / "run")


@pytest.fixture
def store(settings) -> Store:
    """A store holding one kernel ``k`` and one image ``debian-bookworm`` that uses it."""
    store = Store(Database(settings.db_path))
    store.add_kernel(
        Kernel(
            name="k",
            version="6.1",
            dir="/k",
            vmlinuz="/k/v",
            initrd="/k/i",
            source="t",
            created_at="t",
        )
    )
    store.add_image(
        Image(
            name="debian-bookworm",
            kernel="k",
            rootfs="/r.ext4",
            size_bytes=1,
            source="t",
            created_at="t",
        )
    )
    return store
