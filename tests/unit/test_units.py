import pytest

from banger.errors import UserError
from banger.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("4G", 4 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("100", 100), ("2 gb", 2 << 30)],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "-1G", "4X", "0", "four"])
def test_bad_sizes_are_user_errors(text):
    with pytest.raises(UserError) as err:
        parse_size(text, what="--work-disk-size")
    assert "--work-disk-size" in err.value.message


def test_format_size():
    assert format_size(4 << 30) == "4.0 GiB"
    assert format_size(10) == "10 B"
