import pytest

from banger.errors import NotFound
from banger.image import catalog


def test_debian_bookworm_is_in_the_catalog() -> None:
    entry = catalog.lookup("debian-bookworm")
    assert entry.suite == "bookworm"
    assert entry.builder == "debootstrap"
    assert "debian-bookworm" in catalog.names()


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(NotFound) as err:
        catalog.lookup("ubuntu-noble")
    assert "debian-bookworm" in (err.value.hint or "")
