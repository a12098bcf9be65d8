from __future__ import annotations

import pytest

from banger.config import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", runtime_dir=tmp_path / "run")
